"""FeatherFace Nano-B: the student that distillation trains and B-FPGM prunes.

The FeatherFace V1 topology (see :mod:`featherface.models.featherface_v1`) made light, with three
small-face modules (:mod:`featherface.models.small_face`) in the neck::

    image Tensor[B, 3, H, W]
    -> MobileNetV1 x0.25                      C3, C4, C5: 64, 128, 256 channels, strides 8/16/32
    -> ReLU(x + CBAM(x)) per level            CBAM reduction 16 (V1's, so V1 weights map)
    -> BiFPN, 1 cell, 48 channels             P3, P4, P5
    -> MSE-FPN on [P3, P4, P5]                SEM + SIM + GCG (Guo et al. 2023)
    -> ScaleDecoupling on P3                  small-face path, large-face gate
    -> ASSN on P3 from [P3, P4, P5]           scale sequence + attention (Lee and Kim 2024)
    -> ReLU(x + CBAM(x)) per level            CBAM reduction 16
    -> SSH per level                          plain 3x3 convs (deformable optional)
    -> channel-shuffle block per level        48 channels
    -> class / box / landmark 1x1 heads       2 anchors per cell
    -> RawOutputs(loc[B, N, 4], conf[B, N, 2] logits, landm[B, N, 10])

with ``N = 2 * sum_s ceil(H / s) * ceil(W / s)`` over s in (8, 16, 32), the prior order of V1.
The backbone is V1's, so the ImageNet MobileNetV1 x0.25 weights load into it unchanged.

Measured size (true parameters, ``sum(p.numel())``) of ``featherface-nano-b`` with its defaults
(48 channels, 1 BiFPN cell, plain SSH), full and with one switch changed:

=============================  ==========
configuration                  parameters
=============================  ==========
full (default)                 383,670
scale_decoupling=False         379,002
assn=False                     375,412
mse_fpn=False                  362,621
all three small-face off       349,695
deformable=True                480,303
=============================  ==========

The full model splits into backbone 213,072, backbone CBAMs 11,528, BiFPN 52,186, MSE-FPN 21,049,
ScaleDecoupling 4,668, ASSN 8,258, neck CBAMs 1,317, SSH 58,752, shuffle blocks 8,136 and heads
4,704. Pruning 55-65 % of its parameters leaves 172,652-134,285, inside the 120K-180K target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from featherface.models.backbone import MobileNetV1, load_imagenet_weights
from featherface.models.bifpn import BiFPNStack
from featherface.models.cbam import ResidualCBAM
from featherface.models.context import SSH, ChannelShuffleBlock
from featherface.models.heads import DetectionHead
from featherface.models.outputs import RawOutputs
from featherface.models.registry import register_model
from featherface.models.small_face import ASSN, MSEFPN, ScaleDecoupling
from featherface.models.widths import apply_widths

__all__ = ["FeatherFaceNanoB", "featherface_nano_b"]

CBAM_REDUCTION = 16  # V1's, on the backbone and on the neck
NUM_ANCHORS = 2  # per cell, as V1 and the prior generator


class FeatherFaceNanoB(nn.Module):
    """FeatherFace Nano-B detector; ``forward(Tensor[B, 3, H, W]) -> RawOutputs`` (module doc).

    The input is prepared as V1's (BGR minus the mean (104, 117, 123), not scaled). A switched-off
    small-face module is ``None`` and its step is skipped, so every combination is a valid
    network with fewer parameters. ``config`` holds the constructor arguments, which are the
    registry builder's, so ``build_model("featherface-nano-b", **model.config)`` rebuilds it.
    """

    def __init__(
        self,
        neck_channels: int = 48,
        bifpn_repeats: int = 1,
        scale_decoupling: bool = True,
        assn: bool = True,
        mse_fpn: bool = True,
        deformable: bool = False,
        deform_implementation: str = "sampling",
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "neck_channels": neck_channels,
            "bifpn_repeats": bifpn_repeats,
            "scale_decoupling": scale_decoupling,
            "assn": assn,
            "mse_fpn": mse_fpn,
            "deformable": deformable,
            "deform_implementation": deform_implementation,
        }
        channels = neck_channels
        self.backbone = MobileNetV1()
        in_channels = self.backbone.channels
        levels = len(in_channels)
        self.backbone_attention = nn.ModuleList(
            ResidualCBAM(c, CBAM_REDUCTION) for c in in_channels
        )
        self.bifpn = BiFPNStack(in_channels, channels, bifpn_repeats)
        self.mse_fpn = MSEFPN(channels, levels) if mse_fpn else None
        self.scale_decoupling = ScaleDecoupling(channels) if scale_decoupling else None
        self.assn = ASSN(channels) if assn else None
        self.neck_attention = nn.ModuleList(
            ResidualCBAM(channels, CBAM_REDUCTION) for _ in range(levels)
        )
        self.context = nn.ModuleList(
            SSH(channels, channels, deformable, deform_implementation) for _ in range(levels)
        )
        self.shuffle = nn.ModuleList(ChannelShuffleBlock(channels) for _ in range(levels))
        self.head = DetectionHead(channels, levels, NUM_ANCHORS)

    def neck(self, features: list[Tensor]) -> list[Tensor]:
        """Backbone levels -> attended neck levels ``[Tensor[B, C, H_l, W_l]]`` (l = 3, 4, 5)."""
        features = [a(x) for a, x in zip(self.backbone_attention, features, strict=True)]
        features = list(self.bifpn(features))
        if self.mse_fpn is not None:
            features = self.mse_fpn(features)
        p3, p4, p5 = features
        if self.scale_decoupling is not None:
            p3 = self.scale_decoupling(p3)
        if self.assn is not None:
            p3 = self.assn(p3, p4, p5)
        return [a(x) for a, x in zip(self.neck_attention, (p3, p4, p5), strict=True)]

    def forward(self, images: Tensor) -> RawOutputs:
        features = self.neck(self.backbone(images))
        features = [
            shuffle(context(x))
            for context, shuffle, x in zip(self.context, self.shuffle, features, strict=True)
        ]
        return self.head(features)


@register_model("featherface-nano-b")
def featherface_nano_b(
    neck_channels: int = 48,
    bifpn_repeats: int = 1,
    scale_decoupling: bool = True,
    assn: bool = True,
    mse_fpn: bool = True,
    deformable: bool = False,
    deform_implementation: str = "sampling",
    backbone_weights: str | Path | None = None,
    widths: dict[str, list[int]] | None = None,
) -> FeatherFaceNanoB:
    """FeatherFace Nano-B (pre-pruning), every switch an ablation that keeps the network valid.

    ``neck_channels``: BiFPN/SSH/head width (a multiple of 4). ``bifpn_repeats``: BiFPN cells.
    ``scale_decoupling``, ``assn``, ``mse_fpn``: the small-face modules. ``deformable``: DCNv2
    convs in SSH as V1 (slow on CPU, off by default), computed by ``deform_implementation``
    (``"sampling"`` or ``"torchvision"``). ``backbone_weights``: optional path to the ImageNet
    ``mobilenetV1X0.25_pretrain.tar`` (read as plain tensors; see
    :func:`~featherface.models.backbone.load_imagenet_weights`). ``widths``: layer sizes of a
    pruned network (:func:`~featherface.models.widths.layer_widths` of it), applied after the
    backbone weights; the layers it names start from fresh weights.

    ``model.config`` holds every keyword argument but ``backbone_weights`` (the weights are in
    the checkpoint; the path need not exist where it is loaded), so
    ``build_model("featherface-nano-b", **model.config)`` rebuilds the same network.
    """
    model = FeatherFaceNanoB(
        neck_channels=neck_channels,
        bifpn_repeats=bifpn_repeats,
        scale_decoupling=scale_decoupling,
        assn=assn,
        mse_fpn=mse_fpn,
        deformable=deformable,
        deform_implementation=deform_implementation,
    )
    if backbone_weights is not None:
        load_imagenet_weights(model.backbone, backbone_weights)
    if widths is not None:
        apply_widths(model, widths)
        model.config["widths"] = {name: list(width) for name, width in widths.items()}
    return model
