"""BiFPN over three levels (P3, P4, P5), as FeatherFace V1 uses it.

Tan et al., "EfficientDet: Scalable and Efficient Object Detection", CVPR 2020, Sec. 3.2-3.3
(bidirectional cross-scale connections, fast normalised fusion) in the form of the original
FeatherFace code (``models/net.py`` ``BiFPN``, itself from Zylo117's EfficientDet port) cut down
to three levels. With the fast normalised fusion of Eq. 3 followed by swish,

    fuse(w; x_1..x_n) = swish(sum_i w_i * x_i / (sum_j w_j + eps)),  w = ReLU(weights), eps = 1e-4

one cell computes::

    P4_td  = conv4_up(fuse(p4_w1; P4_in, up(P5_in)))
    P3_out = conv3_up(fuse(p3_w1; P3_in, up(P4_td)))
    P4_out = conv4_down(fuse(p4_w2; P4_in', P4_td, down(P3_out)))
    P5_out = conv5_down(fuse(p5_w2; P5_in', down(P4_out)))

``p5_w2`` holds three weights for two inputs, as in the original: the third weighs no feature
but enlarges the normaliser. ``up`` is nearest-neighbour interpolation to the finer level's size;
``down`` pads with zeros TensorFlow-"same" style (``ceil(n / 2)`` outputs, the extra pixel on the
right/bottom) and takes a 3x3 max with stride 2. Each ``conv*`` is a 3x3 depthwise conv (no
bias), a 1x1 conv (bias) and BN (eps 1e-3, momentum 0.01), with no activation.

The first cell maps the backbone's channels to ``channels`` with 1x1 conv + BN layers; it has
separate layers for the top-down inputs (``p3/p4/p5_down_channel``) and for the bottom-up inputs
P4_in', P5_in' (``p4/p5_down_channel_2``). Later cells take P4_in' = P4_in and P5_in' = P5_in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class SeparableConvBN(nn.Module):
    """3x3 depthwise conv (padding 1, no bias) -> 1x1 conv (bias) -> BN; shape-preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Conv2d(
            channels, channels, 3, padding=1, groups=channels, bias=False
        )
        self.pointwise_conv = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.pointwise_conv(self.depthwise_conv(x)))


def _down_channel(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1),
        nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
    )


def same_max_pool(x: Tensor, kernel_size: int = 3, stride: int = 2) -> Tensor:
    """Max pooling with TensorFlow "same" padding: ``Tensor[B, C, H, W] ->
    Tensor[B, C, ceil(H / stride), ceil(W / stride)]``.

    The padding is ``(ceil(n / s) - 1) * s - n + k`` per axis, split with the smaller half on the
    left/top, and filled with zeros (not -inf), exactly as the original. ``ceil(n / s)`` is
    written ``(n + s - 1) // s``: integer maths on the sizes, which a traced export (ONNX,
    TorchScript) keeps as operations on the input shape instead of freezing to constants.
    """
    height, width = x.shape[-2:]
    pad_w = ((width + stride - 1) // stride - 1) * stride - width + kernel_size
    pad_h = ((height + stride - 1) // stride - 1) * stride - height + kernel_size
    x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return F.max_pool2d(x, kernel_size, stride)


def _upsample_to(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _fuse(weights: Tensor, inputs: Sequence[Tensor], epsilon: float) -> Tensor:
    """Fast normalised fusion followed by swish: ``swish(sum_i w_i x_i / (sum_i w_i + eps))``
    with ``w = ReLU(weights)``."""
    w = torch.relu(weights)
    w = w / (w.sum(dim=0) + epsilon)
    fused = w[0] * inputs[0]
    for index in range(1, len(inputs)):
        fused = fused + w[index] * inputs[index]
    return F.silu(fused)  # swish: x * sigmoid(x)


class BiFPN(nn.Module):
    """One BiFPN cell on three levels (the unit the original code calls ``BiFPN``).

    ``forward([P3, P4, P5]) -> (P3_out, P4_out, P5_out)``, each ``Tensor[B, channels, H_l, W_l]``
    at the inputs' resolutions (strides 8, 16, 32). With ``in_channels`` (first cell) the inputs
    have those channels and are down-channelled; without, they already have ``channels``.
    """

    def __init__(
        self,
        channels: int,
        in_channels: Sequence[int] | None = None,
        epsilon: float = 1e-4,
    ) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.first = in_channels is not None
        if in_channels is not None:
            c3, c4, c5 = in_channels
            self.p3_down_channel = _down_channel(c3, channels)
            self.p4_down_channel = _down_channel(c4, channels)
            self.p5_down_channel = _down_channel(c5, channels)
            self.p4_down_channel_2 = _down_channel(c4, channels)
            self.p5_down_channel_2 = _down_channel(c5, channels)
        self.conv4_up = SeparableConvBN(channels)
        self.conv3_up = SeparableConvBN(channels)
        self.conv4_down = SeparableConvBN(channels)
        self.conv5_down = SeparableConvBN(channels)
        self.p4_w1 = nn.Parameter(torch.ones(2))
        self.p3_w1 = nn.Parameter(torch.ones(2))
        self.p4_w2 = nn.Parameter(torch.ones(3))
        # Three weights for two inputs, as in the original: the third is never multiplied with a
        # feature but still enters the normaliser, so it is kept for exact outputs.
        self.p5_w2 = nn.Parameter(torch.ones(3))

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        p3, p4, p5 = features
        if self.first:
            p3_in = self.p3_down_channel(p3)
            p4_in = self.p4_down_channel(p4)
            p5_in = self.p5_down_channel(p5)
        else:
            p3_in, p4_in, p5_in = p3, p4, p5
        eps = self.epsilon
        p4_td = self.conv4_up(_fuse(self.p4_w1, (p4_in, _upsample_to(p5_in, p4_in)), eps))
        p3_out = self.conv3_up(_fuse(self.p3_w1, (p3_in, _upsample_to(p4_td, p3_in)), eps))
        if self.first:
            p4_in = self.p4_down_channel_2(p4)
            p5_in = self.p5_down_channel_2(p5)
        p4_out = self.conv4_down(_fuse(self.p4_w2, (p4_in, p4_td, same_max_pool(p3_out)), eps))
        p5_out = self.conv5_down(_fuse(self.p5_w2, (p5_in, same_max_pool(p4_out)), eps))
        return p3_out, p4_out, p5_out


class BiFPNStack(nn.Sequential):
    """``repeats`` stacked :class:`BiFPN` cells (the first one down-channels ``in_channels``).

    ``forward([P3, P4, P5]) -> (P3_out, P4_out, P5_out)`` with ``channels`` channels each.
    FeatherFace V1 (EfficientDet-D0 row of Table 1, cut to 64 channels) uses 3 repeats.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        repeats: int,
        epsilon: float = 1e-4,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"a BiFPN needs at least one cell, got repeats={repeats}")
        super().__init__(
            BiFPN(channels, in_channels, epsilon),
            *(BiFPN(channels, None, epsilon) for _ in range(repeats - 1)),
        )
