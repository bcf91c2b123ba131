"""FPGM selection on hand-made layers."""

from __future__ import annotations

import pytest
import torch

from featherface.prune.fpgm import (
    distance_sums,
    prune_count,
    rounded_prune_count,
    select_filters,
)


def test_distance_sums_by_hand() -> None:
    """Three 1-D filters at 0, 1 and 3: sums 0+1+3, 1+0+2, 3+2+0."""
    weight = torch.tensor([[0.0], [1.0], [3.0]]).view(3, 1, 1, 1)
    torch.testing.assert_close(
        distance_sums(weight), torch.tensor([4.0, 3.0, 5.0], dtype=torch.float64)
    )


def test_picks_filters_nearest_the_geometric_median() -> None:
    """Filters on a line at -2, -1, 0, 1, 2 plus two far outliers: the median-most go first."""
    points = [-2.0, -1.0, 0.0, 1.0, 2.0, 40.0, -40.0]
    weight = torch.zeros(len(points), 2, 3, 3)
    weight[:, 0, 1, 1] = torch.tensor(points)
    assert select_filters(weight, 1 / 7) == [2]
    assert select_filters(weight, 3 / 7) == [1, 2, 3]
    assert 5 not in select_filters(weight, 5 / 7) and 6 not in select_filters(weight, 5 / 7)


def test_prune_count_floor_and_keeps_one() -> None:
    assert prune_count(10, 0.0) == 0
    assert prune_count(10, 0.55) == 5
    assert prune_count(10, 0.6) == 6
    assert prune_count(10, 1.0) == 9
    assert prune_count(1, 0.9) == 0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        prune_count(10, 1.5)


def test_no_selection_at_rate_zero() -> None:
    assert select_filters(torch.randn(8, 4, 3, 3), 0.0) == []


def test_rounded_prune_count_keeps_multiples_of_the_block() -> None:
    # 64 channels at 0.4: floor(25.6) = 25 removed, 39 kept -> 40 kept (nearest multiple of 8)
    assert rounded_prune_count(64, 0.4, 8) == 24
    # 39 kept of 64 at multiple 1 is plain prune_count
    assert rounded_prune_count(64, 0.4, 1) == prune_count(64, 0.4) == 25
    # 36 kept -> 40 (ties round up); 35 kept -> 32
    assert rounded_prune_count(64, 28 / 64, 8) == 24
    assert rounded_prune_count(64, 29 / 64, 8) == 32
    # fewer kept than one block: left as it is
    assert rounded_prune_count(16, 0.7, 8) == prune_count(16, 0.7) == 11
    # rounding never keeps more than the layer has (12 channels, 10 kept -> 8)
    assert rounded_prune_count(12, 0.2, 8) == 4
    assert rounded_prune_count(8, 0.0, 8) == 0
    with pytest.raises(ValueError, match="at least 1"):
        rounded_prune_count(8, 0.5, 0)
