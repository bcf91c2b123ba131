"""Priors worked out by hand, against a plain loop, and at the paper's input size."""

from __future__ import annotations

import math

import pytest
import torch

from featherface.detection.priors import PriorConfig, feature_map_sizes, num_priors, prior_boxes


def loop_priors(height: int, width: int) -> torch.Tensor:
    """The definition, one prior at a time (float64, rounded once to float32)."""
    rows = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512)), strict=True):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for m in sizes:
                    rows.append(
                        [(j + 0.5) * step / width, (i + 0.5) * step / height, m / width, m / height]
                    )
    return torch.tensor(rows, dtype=torch.float64).to(torch.float32)


def test_tiny_input_by_hand() -> None:
    assert feature_map_sizes((32, 32)) == [(4, 4), (2, 2), (1, 1)]
    p = prior_boxes((32, 32))
    assert p.shape == (4 * 4 * 2 + 2 * 2 * 2 + 1 * 1 * 2, 4)
    assert p.dtype == torch.float32
    expected_first = torch.tensor(
        [
            [0.125, 0.125, 0.5, 0.5],  # level 0, cell (0, 0), min size 16
            [0.125, 0.125, 1.0, 1.0],  # same cell, min size 32
            [0.375, 0.125, 0.5, 0.5],  # cell (0, 1): next column first
            [0.375, 0.125, 1.0, 1.0],
        ]
    )
    torch.testing.assert_close(p[:4], expected_first, rtol=0, atol=0)
    torch.testing.assert_close(p[8], torch.tensor([0.125, 0.375, 0.5, 0.5]), rtol=0, atol=0)
    torch.testing.assert_close(p[32], torch.tensor([0.25, 0.25, 2.0, 2.0]), rtol=0, atol=0)
    torch.testing.assert_close(p[-1], torch.tensor([0.5, 0.5, 16.0, 16.0]), rtol=0, atol=0)


def test_count_at_640() -> None:
    assert prior_boxes((640, 640)).shape == (16800, 4)
    assert num_priors((640, 640)) == 16800


def test_non_square_uses_height_for_y_and_width_for_x() -> None:
    p = prior_boxes((480, 640))
    assert p.shape[0] == 2 * (60 * 80 + 30 * 40 + 15 * 20) == num_priors((480, 640))
    row_one = p[80 * 2]  # level 0, cell (1, 0), min size 16
    torch.testing.assert_close(
        row_one, torch.tensor([0.5 * 8 / 640, 1.5 * 8 / 480, 16 / 640, 16 / 480])
    )


@pytest.mark.parametrize("size", [(333, 517), (480, 640), (97, 64)])
def test_matches_loop_definition_exactly(size: tuple[int, int]) -> None:
    expected = loop_priors(*size)
    assert torch.equal(prior_boxes(size), expected)


def test_odd_size_count() -> None:
    assert feature_map_sizes((333, 517)) == [(42, 65), (21, 33), (11, 17)]
    assert prior_boxes((333, 517)).shape[0] == 2 * (42 * 65 + 21 * 33 + 11 * 17)


def test_cached_result_is_a_copy() -> None:
    first = prior_boxes((64, 64))
    first.zero_()
    assert prior_boxes((64, 64)).abs().sum() > 0


def test_clip() -> None:
    p = prior_boxes((64, 64), clip=True)
    assert p.min() >= 0 and p.max() <= 1
    assert prior_boxes((64, 64)).max() > 1


def test_config() -> None:
    config = PriorConfig()
    assert config.num_anchors_per_level == (2, 2, 2)
    assert config.variances == (0.1, 0.2)
    assert torch.equal(config.prior_boxes((64, 96)), prior_boxes((64, 96)))
    single = PriorConfig(min_sizes=((16,), (32, 64, 96)), steps=(8, 16))
    assert single.num_anchors_per_level == (1, 3)
    assert single.prior_boxes((32, 32)).shape == (16 * 1 + 4 * 3, 4)
    with pytest.raises(ValueError, match="levels"):
        PriorConfig(min_sizes=((16,),), steps=(8, 16))
