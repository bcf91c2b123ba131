"""FeatherFace V1.

Kim et al., "FeatherFace: Robust and Lightweight Face Detection via Optimal Feature Integration",
Electronics 14(3) 517, 2025, as its public code builds it (dohun-mat/FeatherFace @8b6ebc2,
``models/retinaface.py`` with ``cfg_mnet``)::

    image Tensor[B, 3, H, W]
    -> MobileNetV1 x0.25                      C3, C4, C5: 64, 128, 256 channels, strides 8/16/32
    -> ReLU(x + CBAM(x)) per level            CBAM reduction 16
    -> BiFPN, 3 cells, 64 channels            P3, P4, P5
    -> ReLU(x + CBAM(x)) per level            CBAM reduction 16
    -> deformable SSH per level               64 channels
    -> channel-shuffle block per level        64 channels
    -> class / box / landmark 1x1 heads       2 anchors per cell
    -> RawOutputs(loc[B, N, 4], conf[B, N, 2] logits, landm[B, N, 10])

with ``N = 2 * sum_s ceil(H / s) * ceil(W / s)`` over s in (8, 16, 32) (16,800 at 640x640).
Measured size: 592,371 parameters (the paper's "0.49M" is thop's count, which misses the
deformable convs' main weights and the BiFPN fusion weights; see
:mod:`featherface.models.complexity`).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from featherface.models.backbone import MobileNetV1, load_imagenet_weights
from featherface.models.bifpn import BiFPNStack
from featherface.models.cbam import ResidualCBAM
from featherface.models.context import SSH, ChannelShuffleBlock
from featherface.models.heads import DetectionHead
from featherface.models.outputs import RawOutputs
from featherface.models.registry import register_model


class FeatherFaceV1(nn.Module):
    """FeatherFace V1 detector; ``forward(Tensor[B, 3, H, W]) -> RawOutputs`` (see module doc).

    The input is a BGR image minus the mean (104, 117, 123), not scaled.
    """

    def __init__(
        self,
        out_channels: int = 64,
        cbam_reduction: int = 16,
        bifpn_repeats: int = 3,
        num_anchors: int = 2,
        deform_implementation: str = "sampling",
    ) -> None:
        super().__init__()
        self.backbone = MobileNetV1()
        in_channels = self.backbone.channels
        self.backbone_attention = nn.ModuleList(
            ResidualCBAM(channels, cbam_reduction) for channels in in_channels
        )
        self.bifpn = BiFPNStack(in_channels, out_channels, bifpn_repeats)
        self.bifpn_attention = nn.ModuleList(
            ResidualCBAM(out_channels, cbam_reduction) for _ in in_channels
        )
        self.context = nn.ModuleList(
            SSH(out_channels, out_channels, True, deform_implementation) for _ in in_channels
        )
        self.shuffle = nn.ModuleList(ChannelShuffleBlock(out_channels) for _ in in_channels)
        self.head = DetectionHead(out_channels, len(in_channels), num_anchors)

    def forward(self, images: Tensor) -> RawOutputs:
        features = self.backbone(images)
        features = [attend(x) for attend, x in zip(self.backbone_attention, features, strict=True)]
        features = list(self.bifpn(features))
        features = [attend(x) for attend, x in zip(self.bifpn_attention, features, strict=True)]
        features = [
            shuffle(context(x))
            for context, shuffle, x in zip(self.context, self.shuffle, features, strict=True)
        ]
        return self.head(features)


@register_model("featherface-v1")
def featherface_v1(
    deform_implementation: str = "sampling",
    backbone_weights: str | Path | None = None,
) -> FeatherFaceV1:
    """FeatherFace V1 as in the paper's code (64 channels, CBAM r=16, 3 BiFPN cells, 2 anchors).

    ``deform_implementation``: how the deformable convs are computed, ``"sampling"`` or
    ``"torchvision"`` (same weights, same outputs). ``backbone_weights``: optional path to the
    ImageNet ``mobilenetV1X0.25_pretrain.tar`` (read as plain tensors; see
    :func:`~featherface.models.backbone.load_imagenet_weights`).
    """
    model = FeatherFaceV1(deform_implementation=deform_implementation)
    if backbone_weights is not None:
        load_imagenet_weights(model.backbone, backbone_weights)
    model.config = {"deform_implementation": deform_implementation}
    return model
