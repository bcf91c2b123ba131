"""RetinaFace with a MobileNetV1 x0.25 backbone (the FeatherFace paper's baseline).

Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild", CVPR 2020, Sec. 4.2
(feature pyramid, SSH context modules, per-level heads), in the form of the biubug6 code
(biubug6/Pytorch_Retinaface @b984b4b, ``models/retinaface.py`` with ``cfg_mnet``)::

    image Tensor[B, 3, H, W]
    -> MobileNetV1 x0.25                      C3, C4, C5: 64, 128, 256 channels, strides 8/16/32
    -> FPN, 64 channels                       P3, P4, P5
    -> SSH per level (plain convs)            64 channels
    -> class / box / landmark 1x1 heads       2 anchors per cell
    -> RawOutputs(loc[B, N, 4], conf[B, N, 2] logits, landm[B, N, 10])

Measured size: 426,608 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from featherface.models.backbone import ConvBNAct, MobileNetV1, load_imagenet_weights
from featherface.models.context import SSH
from featherface.models.heads import DetectionHead
from featherface.models.outputs import RawOutputs
from featherface.models.registry import register_model


class FPN(nn.Module):
    """RetinaFace's three-level feature pyramid (Lin et al., CVPR 2017, Sec. 3, top-down path).

    ``forward([C3, C4, C5]) -> [P3, P4, P5]``, each ``Tensor[B, out_channels, H_l, W_l]``::

        L_l = act(BN(conv1x1(C_l)))                              lateral.{0,1,2}
        P5  = L5
        P4  = act(BN(conv3x3(L4 + up(P5))))                      merge.1
        P3  = act(BN(conv3x3(L3 + up(P4))))                      merge.0

    ``up`` is nearest-neighbour interpolation to the finer level's size; ``act`` is
    LeakyReLU(0.1) when ``out_channels <= 64``, else ReLU (the original's rule).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        slope = 0.1 if out_channels <= 64 else 0.0
        self.lateral = nn.ModuleList(
            ConvBNAct(channels, out_channels, 1, negative_slope=slope) for channels in in_channels
        )
        self.merge = nn.ModuleList(
            ConvBNAct(out_channels, out_channels, 3, negative_slope=slope)
            for _ in range(len(in_channels) - 1)
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        laterals = [lateral(x) for lateral, x in zip(self.lateral, features, strict=True)]
        outputs = [laterals[-1]]
        for level in range(len(laterals) - 2, -1, -1):
            coarser = F.interpolate(outputs[0], size=laterals[level].shape[-2:], mode="nearest")
            outputs.insert(0, self.merge[level](laterals[level] + coarser))
        return outputs


class RetinaFaceMNet(nn.Module):
    """RetinaFace-MobileNet0.25; ``forward(Tensor[B, 3, H, W]) -> RawOutputs``.

    The input is a BGR image minus the mean (104, 117, 123), not scaled.
    """

    def __init__(self, out_channels: int = 64, num_anchors: int = 2) -> None:
        super().__init__()
        self.backbone = MobileNetV1()
        in_channels = self.backbone.channels
        self.fpn = FPN(in_channels, out_channels)
        self.context = nn.ModuleList(
            SSH(out_channels, out_channels, deformable=False) for _ in in_channels
        )
        self.head = DetectionHead(out_channels, len(in_channels), num_anchors)

    def forward(self, images: Tensor) -> RawOutputs:
        features = self.fpn(self.backbone(images))
        features = [context(x) for context, x in zip(self.context, features, strict=True)]
        return self.head(features)


@register_model("retinaface-mnet025")
def retinaface_mnet025(backbone_weights: str | Path | None = None) -> RetinaFaceMNet:
    """RetinaFace-MobileNet0.25 as ``cfg_mnet`` (64 channels, 2 anchors per cell).

    ``backbone_weights``: optional path to the ImageNet ``mobilenetV1X0.25_pretrain.tar`` (read
    as plain tensors; see :func:`~featherface.models.backbone.load_imagenet_weights`).
    """
    model = RetinaFaceMNet()
    if backbone_weights is not None:
        load_imagenet_weights(model.backbone, backbone_weights)
    model.config = {}
    return model
