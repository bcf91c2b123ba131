"""Detection heads of RetinaFace and FeatherFace: per level, one 1x1 conv each for class
logits, box offsets and landmark offsets.

Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild", CVPR 2020, Sec. 3.1
(multi-task loss: face classification, box regression, five facial landmarks) and Sec. 4.2
(independent heads on each pyramid level), in the form of the biubug6 code's ``ClassHead``,
``BboxHead`` and ``LandmarkHead``.

For a level ``Tensor[B, C, H, W]`` with ``A`` anchors per cell, a head of ``V`` values per anchor
computes ``conv1x1(x): Tensor[B, A*V, H, W]``, permutes it to ``[B, H, W, A*V]`` and views it as
``Tensor[B, H*W*A, V]``, so priors run row-major over cells and then over the anchors of a cell.
The levels are concatenated in order (stride 8, 16, 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from featherface.models.outputs import RawOutputs


class LevelPredictor(nn.ModuleList):
    """One 1x1 conv (with bias) per level predicting ``values`` numbers for each of
    ``num_anchors`` anchors; ``forward([Tensor[B, C, H_l, W_l]]) -> Tensor[B, sum_l H_l*W_l*A, V]``.
    """

    def __init__(self, in_channels: int, values: int, num_levels: int, num_anchors: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, num_anchors * values, kernel_size=1) for _ in range(num_levels)
        )
        self.values = values

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        if len(features) != len(self):
            raise ValueError(f"expected {len(self)} feature levels, got {len(features)}")
        per_level = []
        for conv, feature in zip(self, features, strict=True):
            out = conv(feature).permute(0, 2, 3, 1).contiguous()
            per_level.append(out.view(out.shape[0], -1, self.values))
        return torch.cat(per_level, dim=1)


class DetectionHead(nn.Module):
    """Class (2 logits), box (4 offsets) and landmark (10 offsets) predictors over the levels.

    ``forward([Tensor[B, in_channels, H_l, W_l]]) -> RawOutputs(loc[B, N, 4], conf[B, N, 2],
    landm[B, N, 10])`` with ``N = num_anchors * sum_l H_l * W_l``; ``conf`` holds logits. With 64
    channels, 3 levels and 2 anchors: 6,240 parameters.
    """

    def __init__(self, in_channels: int, num_levels: int = 3, num_anchors: int = 2) -> None:
        super().__init__()
        self.num_anchors = num_anchors
        self.bbox = LevelPredictor(in_channels, 4, num_levels, num_anchors)
        self.cls = LevelPredictor(in_channels, 2, num_levels, num_anchors)
        self.landmark = LevelPredictor(in_channels, 10, num_levels, num_anchors)

    def forward(self, features: Sequence[Tensor]) -> RawOutputs:
        return RawOutputs(
            loc=self.bbox(features), conf=self.cls(features), landm=self.landmark(features)
        )
