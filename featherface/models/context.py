"""Context modules: the SSH context module (plain or deformable) and FeatherFace V1's
channel-shuffle block.

SSH: Najibi et al., "SSH: Single Stage Headless Face Detector", ICCV 2017, Sec. 3.3 (context
module), in the form RetinaFace uses (Deng et al., CVPR 2020, Sec. 4.2; the biubug6 code's
``SSH``): three branches with effective receptive fields 3x3, 5x5 and 7x7 built from stacked 3x3
convs, concatenated to ``out_channels``::

    b3 = BN(conv3X3(x))                                    out/2 channels
    t  = act(BN(conv5X5_1(x)))                             out/4
    b5 = BN(conv5X5_2(t))                                  out/4
    b7 = BN(conv7x7_3(act(BN(conv7X7_2(t)))))              out/4
    SSH(x) = ReLU(cat(b3, b5, b7))

``act`` is LeakyReLU(0.1) when ``out_channels <= 64``, else ReLU (the original's rule).
FeatherFace V1 (Kim et al., "FeatherFace: Robust and Lightweight Face Detection via Optimal
Feature Integration", Electronics 14(3) 517, 2025, method section: deformable convolutions in the
context module) replaces every 3x3 conv by a modulated deformable conv (DCNv2: Zhu et al.,
CVPR 2019, Sec. 2.1, Eq. 3), each followed by the same BN and activation.

Channel shuffle: Zhang et al., "ShuffleNet", CVPR 2018, Sec. 3.1; FeatherFace V1 follows each SSH
output with a shuffle and a bottleneck ``1x1 (C -> C/2) + BN, 3x3 depthwise + BN, 1x1 (C/2 -> C)
+ BN, ReLU``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from featherface.models.deform import ModulatedDeformConv2d


def _conv3x3_bn(
    in_channels: int,
    out_channels: int,
    negative_slope: float | None,
    deformable: bool,
    deform_implementation: str,
) -> nn.Sequential:
    """``[conv3x3 (plain or deformable, no bias), BN, LeakyReLU?]`` as children ``0, 1, 2``."""
    conv: nn.Module
    if deformable:
        conv = ModulatedDeformConv2d(
            in_channels, out_channels, 3, 1, 1, bias=False, implementation=deform_implementation
        )
    else:
        conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
    layers = [conv, nn.BatchNorm2d(out_channels)]
    if negative_slope is not None:
        layers.append(nn.LeakyReLU(negative_slope, inplace=True))
    return nn.Sequential(*layers)


class SSH(nn.Module):
    """SSH context module: ``Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H, W]``.

    ``deformable=False`` is RetinaFace's (plain 3x3 convs); ``deformable=True`` is FeatherFace
    V1's (every conv a :class:`ModulatedDeformConv2d`, computed by ``deform_implementation``).
    Branch names are the original's, so reference checkpoints map one to one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        deformable: bool = False,
        deform_implementation: str = "sampling",
    ) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH needs out_channels divisible by 4, got {out_channels}")
        slope = 0.1 if out_channels <= 64 else 0.0
        quarter = out_channels // 4

        def block(cin: int, cout: int, act: float | None) -> nn.Sequential:
            return _conv3x3_bn(cin, cout, act, deformable, deform_implementation)

        self.conv3X3 = block(in_channels, out_channels // 2, None)
        self.conv5X5_1 = block(in_channels, quarter, slope)
        self.conv5X5_2 = block(quarter, quarter, None)
        self.conv7X7_2 = block(quarter, quarter, slope)
        self.conv7x7_3 = block(quarter, quarter, None)

    def forward(self, x: Tensor) -> Tensor:
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return torch.relu(torch.cat((branch3, branch5, branch7), dim=1))


class ChannelShuffle(nn.Module):
    """Parameter-free channel shuffle, in the original's "alternative" form.

    ``Tensor[B, C, H, W]`` is viewed as ``[B, C / groups, groups, H, W]`` and the two channel axes
    are swapped, so the output is ``cat(x[:, 0::groups], x[:, 1::groups], ...)``: with
    ``groups=2``, the even channels then the odd ones. (ShuffleNet's own form views
    ``[B, groups, C / groups]`` instead; this one equals it with ``C / groups`` groups.)
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        if channels % self.groups:
            raise ValueError(f"{channels} channels cannot be shuffled in {self.groups} groups")
        x = x.reshape(batch, channels // self.groups, self.groups, height, width)
        return x.transpose(1, 2).reshape(batch, channels, height, width)


class ChannelShuffleBlock(nn.Sequential):
    """FeatherFace V1's shuffle block, ``Tensor[B, C, H, W] -> Tensor[B, C, H, W]``.

    Children: ``0`` shuffle (``groups``), ``1`` 1x1 conv ``C -> C/2``, ``2`` BN, ``3`` 3x3
    depthwise conv, ``4`` BN, ``5`` 1x1 conv ``C/2 -> C``, ``6`` BN, ``7`` ReLU; convs without
    bias, and no activation but the last. For C = 64: 4,640 parameters.
    """

    def __init__(self, channels: int, groups: int = 2) -> None:
        hidden = channels // 2
        super().__init__(
            ChannelShuffle(groups),
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
