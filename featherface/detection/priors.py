"""Anchor boxes ("priors") of RetinaFace / FeatherFace, in the order the detection heads emit them.

Level ``k`` has stride ``s = steps[k]`` and a feature map of ``ceil(H / s) x ceil(W / s)`` cells.
Cell ``(i, j)`` (row ``i``, column ``j``) carries one square anchor per min size ``m`` of the level,
in normalised centre form::

    cx = (j + 0.5) * s / W      cy = (i + 0.5) * s / H      w = m / W      h = m / H

Order: level by level, row-major over cells, then the min sizes of the cell. The values are
computed in float64 and rounded once to float32, as the original ``PriorBox`` does (Python floats
into ``torch.Tensor``), so they match it bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

MinSizes = tuple[tuple[int, ...], ...]

DEFAULT_MIN_SIZES: MinSizes = ((16, 32), (64, 128), (256, 512))
DEFAULT_STEPS: tuple[int, ...] = (8, 16, 32)
DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


@dataclass(frozen=True)
class PriorConfig:
    """Anchor layout shared by a detector's heads, its loss and its post-processing.

    ``min_sizes[k]`` are the anchor sides (pixels) of level ``k`` whose stride is ``steps[k]``;
    ``variances`` scale the box/landmark codec; ``clip`` clamps priors to ``[0, 1]``.
    """

    min_sizes: MinSizes = DEFAULT_MIN_SIZES
    steps: tuple[int, ...] = DEFAULT_STEPS
    variances: tuple[float, float] = DEFAULT_VARIANCES
    clip: bool = False

    def __post_init__(self) -> None:
        if len(self.min_sizes) != len(self.steps):
            raise ValueError(
                f"min_sizes has {len(self.min_sizes)} levels but steps has {len(self.steps)}"
            )
        if any(s <= 0 for s in self.steps) or any(m <= 0 for ms in self.min_sizes for m in ms):
            raise ValueError("steps and min_sizes must be positive")
        if any(len(ms) == 0 for ms in self.min_sizes):
            raise ValueError("every level needs at least one min size")

    @property
    def num_anchors_per_level(self) -> tuple[int, ...]:
        """Anchors per cell on each level, e.g. ``(2, 2, 2)`` for the default layout."""
        return tuple(len(ms) for ms in self.min_sizes)

    def prior_boxes(self, image_size: tuple[int, int]) -> Tensor:
        """``Tensor[A, 4]`` priors of this layout for a ``(height, width)`` input."""
        return prior_boxes(image_size, self.min_sizes, self.steps, self.clip)


def feature_map_sizes(
    image_size: tuple[int, int], steps: tuple[int, ...] = DEFAULT_STEPS
) -> list[tuple[int, int]]:
    """``(ceil(H / s), ceil(W / s))`` for each stride ``s`` of a ``(height, width)`` input."""
    height, width = image_size
    return [(math.ceil(height / s), math.ceil(width / s)) for s in steps]


def num_priors(
    image_size: tuple[int, int],
    min_sizes: MinSizes = DEFAULT_MIN_SIZES,
    steps: tuple[int, ...] = DEFAULT_STEPS,
) -> int:
    """Number of priors ``A`` for a ``(height, width)`` input (16,800 at 640x640)."""
    sizes = feature_map_sizes(image_size, steps)
    return sum(rows * cols * len(ms) for (rows, cols), ms in zip(sizes, min_sizes, strict=True))


def prior_boxes(
    image_size: tuple[int, int],
    min_sizes: MinSizes = DEFAULT_MIN_SIZES,
    steps: tuple[int, ...] = DEFAULT_STEPS,
    clip: bool = False,
) -> Tensor:
    """Priors for a ``(height, width)`` input: ``Tensor[A, 4]`` float32, ``(cx, cy, w, h)``
    normalised by the input size. Results are cached per arguments; each call returns a copy.
    """
    key_sizes = tuple(tuple(int(m) for m in ms) for ms in min_sizes)
    key_steps = tuple(int(s) for s in steps)
    size = (int(image_size[0]), int(image_size[1]))
    if len(key_sizes) != len(key_steps):
        raise ValueError(f"min_sizes has {len(key_sizes)} levels but steps has {len(key_steps)}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return _cached_priors(size, key_sizes, key_steps, bool(clip)).clone()


@lru_cache(maxsize=32)
def _cached_priors(
    image_size: tuple[int, int], min_sizes: MinSizes, steps: tuple[int, ...], clip: bool
) -> Tensor:
    levels = [
        _level_priors(image_size, rows, cols, step, sizes)
        for (rows, cols), step, sizes in zip(
            feature_map_sizes(image_size, steps), steps, min_sizes, strict=True
        )
    ]
    out = torch.cat(levels).to(torch.float32)
    return out.clamp_(0.0, 1.0) if clip else out


def _level_priors(
    image_size: tuple[int, int], rows: int, cols: int, step: int, min_sizes: tuple[int, ...]
) -> Tensor:
    """``Tensor[rows * cols * len(min_sizes), 4]`` float64 priors of one level."""
    height, width = image_size
    f64 = torch.float64
    cx = (torch.arange(cols, dtype=f64) + 0.5) * step / width  # [cols]
    cy = (torch.arange(rows, dtype=f64) + 0.5) * step / height  # [rows]
    sizes = torch.tensor(min_sizes, dtype=f64)  # [M]
    grid_cy, grid_cx = torch.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
    shape = (rows, cols, len(min_sizes))
    return torch.stack(
        [
            grid_cx[:, :, None].expand(shape),
            grid_cy[:, :, None].expand(shape),
            (sizes / width).expand(shape),
            (sizes / height).expand(shape),
        ],
        dim=-1,
    ).reshape(-1, 4)
