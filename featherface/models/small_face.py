"""Small-face modules of Nano-B: scale decoupling on P3, the attention-based scale sequence
network (ASSN) on P3, and the multi-scale semantic enhancement FPN (MSE-FPN) on [P3, P4, P5].

- ScaleDecoupling: separate small-object and large-object paths on the stride-8 level, with the
  large-object response suppressing the small-object enhancement so that P3 specialises in small
  faces (the scale-decoupling idea of small-object detectors, written here as a residual gate).
- ASSN: Lee and Kim, "Attention-based scale sequence network for small object detection",
  Heliyon 2024, building on Park et al., "ssFPN: Scale Sequence (S^2) Feature Based Feature
  Pyramid Network for Object Detection", 2022: the pyramid levels resampled to P3 form a scale
  sequence that a 3D convolution reads along the level axis, then channel and spatial attention.
- MSE-FPN: Guo, Wu, Feng and Zou, "Multi-scale semantic enhancement network for object
  detection", Scientific Reports 2023: a semantic extraction module (SEM) with global context,
  a semantic injection module (SIM) per level, and a gated channel guidance (GCG) unit.

Every module takes maps of any size (non-square, odd): coarser maps are resampled with an
explicit ``size=`` to the finer map they meet, and no input tensor is modified in place.
Parameter counts are true counts (``sum(p.numel())``) measured at the width Nano-B uses (48).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASSN",
    "MSEFPN",
    "ChannelAttention",
    "GatedChannelGuidance",
    "ScaleDecoupling",
    "SemanticExtraction",
    "SemanticInjection",
    "SpatialAttention",
]


def _resize(x: Tensor, reference: Tensor, mode: str) -> Tensor:
    """``x`` resampled to the height and width of ``reference`` (explicit ``size=``)."""
    if mode == "nearest":
        return F.interpolate(x, size=reference.shape[-2:], mode="nearest")
    return F.interpolate(x, size=reference.shape[-2:], mode=mode, align_corners=False)


def _depthwise(channels: int, dilation: int = 1) -> list[nn.Module]:
    """Depthwise 3x3 (dilated, same size) -> BN -> ReLU, as a list of layers."""
    conv = nn.Conv2d(
        channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False
    )
    return [conv, nn.BatchNorm2d(channels), nn.ReLU()]


def _separable(channels: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN; keeps ``[B, C, H, W]``."""
    return nn.Sequential(
        *_depthwise(channels, dilation),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class ChannelAttention(nn.Module):
    """Channel gate of CBAM (Woo et al., ECCV 2018):
    ``a = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))``, ``Tensor[B, C, 1, 1]``, where the MLP is
    ``C -> C/r -> C`` (1x1 convs without bias, ReLU between) shared by both pooled vectors.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """Spatial gate of CBAM: ``a = sigmoid(conv_kxk([mean_c(x), max_c(x)]))``, ``Tensor[B, 1, H,
    W]`` (one k x k convolution from 2 channels to 1, no bias).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ScaleDecoupling(nn.Module):
    """Scale decoupling on P3: enhance what is small, suppress what belongs to large faces.

    ``out = x + S(x) * (1 - G(x))`` for ``x: Tensor[B, C, H, W]`` (out has the same shape), where

    - ``S`` is the small-object branch: depthwise 3x3 -> BN -> ReLU -> pointwise -> BN, a local
      detail enhancer with a 3x3 receptive field on the stride-8 map;
    - ``G`` is the large-object detector: 3x3 average pooling, a depthwise 3x3 convolution with
      dilation ``d`` (receptive field ``2d + 3`` cells, 72 pixels at stride 8 for ``d = 3``),
      BN, ReLU, then ``C -> C/r -> C`` 1x1 convolutions and a sigmoid, giving a per-pixel,
      per-channel gate in (0, 1) that is high where a pattern is wider than a small face.

    Where ``G`` fires, the enhancement is withheld and P3 passes through unchanged, so gradients
    push large-face evidence to P4/P5. True parameters at C=48, r=4, d=3: 4,668 (2,928 in ``S``,
    1,740 in ``G``).
    """

    def __init__(self, channels: int, reduction: int = 4, dilation: int = 3) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.small = _separable(channels)
        self.large = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            *_depthwise(channels, dilation),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.small(x) * (1.0 - self.large(x))


class ASSN(nn.Module):
    """Attention-based scale sequence network on P3 (Lee and Kim, Heliyon 2024; ssFPN 2022).

    For ``p3: Tensor[B, C, H, W]``, ``p4: Tensor[B, C, H4, W4]``, ``p5: Tensor[B, C, H5, W5]``:

    1. scale sequence: ``Q = stack([p3, up(p4), up(p5)], dim=2)``, ``Tensor[B, C, 3, H, W]``
       (nearest resampling to ``H x W``);
    2. S^2 feature: ``s = LeakyReLU(BN(Conv3d_(3,1,1)(Q)))``, the 3D kernel spanning the level
       axis with no padding, so the level axis collapses to 1 and ``s: Tensor[B, C, H, W]``;
    3. attention: ``a = p3 * CA(p3)``, ``f = a + s``, ``out = p3 + f * SA(f)`` with CA/SA the
       CBAM channel (reduction r) and spatial (k x k) gates.

    Returns ``Tensor[B, C, H, W]``. True parameters at C=48, r=4, k=7: 8,258 (6,912 in the 3D
    convolution).
    """

    def __init__(self, channels: int, reduction: int = 4, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.sequence = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), bias=False)
        self.sequence_bn = nn.BatchNorm2d(channels)
        self.sequence_act = nn.LeakyReLU(0.1)
        self.channel_attention = ChannelAttention(channels, reduction)
        self.spatial_attention = SpatialAttention(spatial_kernel)

    def scale_sequence(self, p3: Tensor, p4: Tensor, p5: Tensor) -> Tensor:
        """The S^2 feature ``Tensor[B, C, H, W]`` of the three levels at P3's size."""
        stacked = torch.stack([p3, _resize(p4, p3, "nearest"), _resize(p5, p3, "nearest")], dim=2)
        return self.sequence_act(self.sequence_bn(self.sequence(stacked).squeeze(2)))

    def forward(self, p3: Tensor, p4: Tensor, p5: Tensor) -> Tensor:
        sequence = self.scale_sequence(p3, p4, p5)
        fused = p3 * self.channel_attention(p3) + sequence
        return p3 + fused * self.spatial_attention(fused)


class SemanticExtraction(nn.Module):
    """SEM of MSE-FPN: global semantics from the top level ``t: Tensor[B, C, h, w]``.

    ``S = t + L(t) + T(sum_j softmax_j(w^T t_j) t_j)``: ``L`` is a depthwise-separable 3x3 block
    (local semantics), the sum is attention pooling over all ``h*w`` positions (global context
    in the manner of self-attention with one query, as in GCNet), and ``T`` is a ``C -> C/r -> C``
    1x1 transform whose ``Tensor[B, C, 1, 1]`` output is broadcast over the map. Returns
    ``S: Tensor[B, C, h, w]``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.local = _separable(channels)
        self.attention_logits = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def global_context(self, t: Tensor) -> Tensor:
        """Attention-pooled context ``Tensor[B, C, 1, 1]``."""
        weights = self.attention_logits(t).flatten(2).softmax(dim=-1)  # [B, 1, h*w]
        context = torch.bmm(t.flatten(2), weights.transpose(1, 2))  # [B, C, 1]
        return context.unsqueeze(-1)

    def forward(self, t: Tensor) -> Tensor:
        return t + self.local(t) + self.transform(self.global_context(t))


class SemanticInjection(nn.Module):
    """SIM of MSE-FPN for one level: inject the semantics ``S`` into ``x: Tensor[B, C, H, W]``.

    ``U = resize(S, H x W)`` (bilinear), ``[a, b] = BN(conv_1x1(U))`` split into two
    ``Tensor[B, C, H, W]``, and ``out = x * sigmoid(a) + b``: the semantics both re-weight the
    level's own features and add to them.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(2 * channels)

    def forward(self, x: Tensor, semantics: Tensor) -> Tensor:
        scale, shift = self.norm(self.embed(_resize(semantics, x, "bilinear"))).chunk(2, dim=1)
        return x * torch.sigmoid(scale) + shift


class GatedChannelGuidance(nn.Module):
    """GCG of MSE-FPN: one sigmoid channel gate per level from the pooled semantics.

    ``[g_1 .. g_L] = sigmoid(W_2 ReLU(W_1 avgpool(S)))``, each ``g_i: Tensor[B, C, 1, 1]``
    (``W_1: C -> C/r``, ``W_2: C/r -> L*C``, 1x1 convolutions with bias). A level then keeps
    ``g_i * injected_i + (1 - g_i) * x_i``, choosing per channel between the semantically
    injected and the original feature.
    """

    def __init__(self, channels: int, num_levels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.num_levels = num_levels
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, num_levels * channels, 1),
        )

    def forward(self, semantics: Tensor) -> list[Tensor]:
        gates = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(semantics, 1)))
        return list(gates.chunk(self.num_levels, dim=1))


class MSEFPN(nn.Module):
    """Multi-scale semantic enhancement of a feature pyramid (Guo et al., Sci. Rep. 2023).

    For ``features = [P3, P4, P5]`` (finest first, each ``Tensor[B, C, H_i, W_i]``):

    ``S = SEM(P5)``; ``I_i = SIM_i(P_i, S) = P_i * sigmoid(a_i(S)) + b_i(S)``;
    ``g = GCG(S)``; ``out_i = g_i * I_i + (1 - g_i) * P_i``.

    Returns a list of the same shapes. True parameters at C=48, 3 levels, r=4: 21,049 (SEM 4,189,
    three SIMs 4,800 each, GCG 2,460).
    """

    def __init__(self, channels: int, num_levels: int = 3, reduction: int = 4) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.extraction = SemanticExtraction(channels, reduction)
        self.injections = nn.ModuleList(SemanticInjection(channels) for _ in range(num_levels))
        self.guidance = GatedChannelGuidance(channels, num_levels, reduction)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != self.num_levels:
            raise ValueError(f"MSEFPN expects {self.num_levels} levels, got {len(features)}")
        semantics = self.extraction(features[-1])
        gates = self.guidance(semantics)
        outputs = []
        for level, (x, injection) in enumerate(zip(features, self.injections, strict=True)):
            injected = injection(x, semantics)
            outputs.append(gates[level] * injected + (1.0 - gates[level]) * x)
        return outputs
