"""CBAM: Convolutional Block Attention Module.

Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, Sec. 3: a channel gate
(Eq. 2) followed by a spatial gate (Eq. 3), as FeatherFace V1 uses it (the original FeatherFace
code, ``models/net.py``: ``ChannelGate`` with average and max pooling, ``SpatialGate`` with a
7x7 conv and batch norm).

For ``x: Tensor[B, C, H, W]``::

    Mc = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))        Tensor[B, C, 1, 1]
    x' = Mc * x
    Ms = sigmoid(BN(conv7x7([max_c(x'), mean_c(x')])))      Tensor[B, 1, H, W]
    CBAM(x) = Ms * x'

The MLP is ``Linear(C, C // r) -> ReLU -> Linear(C // r, C)`` with biases, shared by both pooled
descriptors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ChannelGate(nn.Module):
    """Channel attention ``x * sigmoid(MLP(avg(x)) + MLP(max(x)))`` with reduction ``reduction``.

    ``Tensor[B, C, H, W] -> Tensor[B, C, H, W]``; ``channels // reduction`` hidden units.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"reduction {reduction} leaves no hidden unit for {channels} channels")
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)

    def _mlp(self, pooled: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(pooled)))

    def forward(self, x: Tensor) -> Tensor:
        logits = self._mlp(x.mean(dim=(2, 3))) + self._mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(logits)[:, :, None, None]


class SpatialGate(nn.Module):
    """Spatial attention ``x * sigmoid(BN(conv([max_c(x), mean_c(x)])))``.

    The two channel descriptors are stacked in the order (max, mean), convolved by a
    ``kernel_size`` x ``kernel_size`` conv (2 -> 1 channel, no bias, same padding) and batch
    normalised (momentum 0.01, as the original). ``Tensor[B, C, H, W] -> Tensor[B, C, H, W]``.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        descriptors = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.bn(self.conv(descriptors)))


class CBAM(nn.Module):
    """Channel gate then spatial gate; ``Tensor[B, C, H, W] -> Tensor[B, C, H, W]``.

    Parameters: ``2 * C * (C // r) + C // r + C`` (MLP) plus 98 + 2 (7x7 conv, BN affine).
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(spatial_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial_gate(self.channel_gate(x))


class ResidualCBAM(nn.Module):
    """``ReLU(x + CBAM(x))``: how FeatherFace V1 applies CBAM to backbone and BiFPN outputs."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.cbam = CBAM(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.cbam(x))
