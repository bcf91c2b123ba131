"""Box and landmark codec: formulas on a worked example and round trips."""

from __future__ import annotations

import math

import torch

from featherface.detection.codec import (
    corners_from_priors,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
)


def random_priors(generator: torch.Generator, n: int) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=generator)
    size = 0.02 + 0.5 * torch.rand(n, 2, generator=generator)
    return torch.cat([centre, size], dim=1)


def test_encode_by_hand() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    box = torch.tensor([[0.42, 0.47, 0.62, 0.57]])  # centre (0.52, 0.52), size (0.2, 0.1)
    expected = torch.tensor([[0.02 / (0.1 * 0.2), 0.02 / (0.1 * 0.1), 0.0, 0.0]])
    torch.testing.assert_close(encode_boxes(box, prior), expected)
    doubled = torch.tensor([[0.3, 0.4, 0.7, 0.6]])  # twice the prior's size
    torch.testing.assert_close(
        encode_boxes(doubled, prior)[0, 2:], torch.full((2,), math.log(2) / 0.2)
    )
    landmark = torch.tensor([[0.52, 0.51] * 5])
    torch.testing.assert_close(encode_landmarks(landmark, prior), torch.tensor([[1.0, 1.0] * 5]))


def test_zero_offsets_decode_to_the_prior() -> None:
    prior = torch.tensor([[0.5, 0.25, 0.2, 0.1]])
    torch.testing.assert_close(decode_boxes(torch.zeros(1, 4), prior), corners_from_priors(prior))
    torch.testing.assert_close(corners_from_priors(prior), torch.tensor([[0.4, 0.2, 0.6, 0.3]]))


def test_box_round_trip_batched() -> None:
    generator = torch.Generator().manual_seed(0)
    priors = random_priors(generator, 500)
    top_left = torch.rand(3, 500, 2, generator=generator)
    size = 0.01 + 0.4 * torch.rand(3, 500, 2, generator=generator)
    boxes = torch.cat([top_left, top_left + size], dim=-1)
    encoded = encode_boxes(boxes, priors)
    assert encoded.shape == (3, 500, 4)
    torch.testing.assert_close(decode_boxes(encoded, priors), boxes, atol=1e-4, rtol=0)


def test_landmark_round_trip_batched() -> None:
    generator = torch.Generator().manual_seed(1)
    priors = random_priors(generator, 500)
    landmarks = torch.rand(2, 500, 10, generator=generator)
    encoded = encode_landmarks(landmarks, priors)
    assert encoded.shape == (2, 500, 10)
    torch.testing.assert_close(decode_landmarks(encoded, priors), landmarks, atol=1e-4, rtol=0)


def test_custom_variances() -> None:
    generator = torch.Generator().manual_seed(2)
    priors = random_priors(generator, 50)
    loc = torch.randn(50, 4, generator=generator)
    boxes = decode_boxes(loc, priors, (0.2, 0.5))
    torch.testing.assert_close(encode_boxes(boxes, priors, (0.2, 0.5)), loc, atol=1e-4, rtol=0)
