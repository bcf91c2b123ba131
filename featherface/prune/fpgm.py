"""FPGM filter selection (He et al., "Filter Pruning via Geometric Median for Deep
Convolutional Neural Networks Acceleration", CVPR 2019, Sec. 3.3).

The filters of a layer nearest its geometric median are the most replaceable by the others.
FPGM ranks filter ``i`` of ``W: Tensor[O, ...]`` by the sum of its Euclidean distances to every
filter of the layer,

    d_i = sum_j || W_i - W_j ||_2,

and prunes the ``n`` filters of smallest ``d_i``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def distance_sums(weight: Tensor) -> Tensor:
    """``Tensor[O]``: ``d_i = sum_j ||W_i - W_j||_2`` of the filters ``W_i = weight[i]``."""
    filters = weight.detach().flatten(1).double()
    return torch.cdist(filters, filters).sum(dim=1)


def prune_count(channels: int, rate: float) -> int:
    """Filters removed at ``rate`` from ``channels``: ``floor(rate * channels)``, leaving at
    least one."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"pruning rate must be in [0, 1], got {rate}")
    return min(math.floor(rate * channels + 1e-9), channels - 1)


def rounded_prune_count(channels: int, rate: float, multiple: int = 1) -> int:
    """Filters removed at ``rate`` when a kept width of ``multiple`` or more must be a multiple
    of ``multiple``.

    The kept width ``k = channels - prune_count(channels, rate)`` becomes
    ``min(channels, multiple * floor(k / multiple + 1/2))`` when ``k >= multiple`` and stays ``k``
    below that. CPU convolution kernels that pack channels in blocks (8 for ONNX Runtime's NCHWc
    layout on AVX2) pad other widths up to the next block, or fall back to slower kernels; a
    width under one block costs what a full block costs, so it is left narrow and keeps its
    smaller parameter count. ``multiple = 1`` is :func:`prune_count`.
    """
    if multiple < 1:
        raise ValueError(f"channel multiple must be at least 1, got {multiple}")
    kept = channels - prune_count(channels, rate)
    if kept >= multiple:
        kept = min(channels, multiple * math.floor(kept / multiple + 0.5))
    return channels - kept


def select_filters(weight: Tensor, rate: float) -> list[int]:
    """Sorted indices of the ``prune_count(O, rate)`` filters of smallest distance sum (ties go
    to the lower index)."""
    count = prune_count(weight.shape[0], rate)
    if count == 0:
        return []
    order = torch.argsort(distance_sums(weight), stable=True)
    return sorted(order[:count].tolist())
