"""Image to network input: BGR order, mean subtracted, planes first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featherface.data.transforms import to_network_input


def test_to_network_input_by_hand() -> None:
    rgb = np.array([[[200, 100, 0], [10, 20, 30]]], dtype=np.uint8)  # one row, two pixels
    planes = to_network_input(rgb)
    assert planes.dtype == torch.float32 and planes.shape == (3, 1, 2)
    # plane 0 is blue minus 104, plane 1 green minus 117, plane 2 red minus 123
    expected = [[[0 - 104, 30 - 104]], [[100 - 117, 20 - 117]], [[200 - 123, 10 - 123]]]
    assert planes.tolist() == expected
    assert planes.is_contiguous()


def test_to_network_input_takes_views_and_rejects_grey() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1]  # a view with a negative stride, as the benchmark passes it
    torch.testing.assert_close(to_network_input(bgr[:, :, ::-1]), to_network_input(rgb))
    with pytest.raises(ValueError, match="expected an RGB image"):
        to_network_input(rgb[:, :, 0])
