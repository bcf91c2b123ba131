"""Matching faces to priors on hand-made cases."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from featherface.detection.codec import corners_from_priors, encode_boxes, encode_landmarks
from featherface.detection.matching import match, match_batch
from featherface.detection.priors import prior_boxes as make_priors

# Three priors (cx, cy, w, h): two small ones in opposite corners and a large central one.
PRIORS = torch.tensor(
    [
        [0.25, 0.25, 0.2, 0.2],
        [0.75, 0.75, 0.2, 0.2],
        [0.5, 0.5, 0.5, 0.5],
    ]
)
NO_LANDMARKS = torch.full((1, 10), float("nan"))


def landmarks_inside(box: torch.Tensor) -> torch.Tensor:
    """Five points spread inside a ``(x1, y1, x2, y2)`` box: ``Tensor[1, 10]``."""
    x1, y1, x2, y2 = box.tolist()
    fractions = torch.tensor([[0.3, 0.3], [0.7, 0.3], [0.5, 0.5], [0.35, 0.7], [0.65, 0.7]])
    points = torch.tensor([x1, y1]) + fractions * torch.tensor([x2 - x1, y2 - y1])
    return points.reshape(1, 10)


def test_face_on_a_prior_is_positive_with_zero_offsets() -> None:
    box = corners_from_priors(PRIORS[:1])
    landmarks = landmarks_inside(box[0])
    result = match(box, landmarks, PRIORS)
    assert result.labels.tolist() == [1, 0, 0]
    assert result.labels.dtype == torch.int64
    torch.testing.assert_close(result.boxes_encoded[0], torch.zeros(4), atol=1e-6, rtol=0)
    assert result.landmark_valid.tolist() == [True, False, False]
    torch.testing.assert_close(
        result.landmarks_encoded[0], encode_landmarks(landmarks[0], PRIORS[0])
    )
    assert torch.all(result.landmarks_encoded[1:] == 0)


def test_face_on_a_real_prior_at_640() -> None:
    priors = make_priors((640, 640))
    # Level 0, cell (row 10, column 20), min size 16: centre (164, 84) pixels.
    box = torch.tensor([[156.0, 76.0, 172.0, 92.0]]) / 640
    result = match(box, NO_LANDMARKS, priors)
    index = (10 * 80 + 20) * 2
    assert result.labels[index] == 1
    torch.testing.assert_close(result.boxes_encoded[index], torch.zeros(4), atol=1e-4, rtol=0)
    assert not result.landmark_valid.any()


def test_tiny_face_below_ignore_iou_gives_no_positive() -> None:
    tiny = torch.tensor([[0.74, 0.74, 0.76, 0.76]])  # IoU 0.01 with its best prior
    result = match(tiny, NO_LANDMARKS, PRIORS)
    assert result.labels.sum() == 0
    assert torch.all(result.boxes_encoded == 0)
    assert not result.landmark_valid.any()


def test_tiny_face_is_left_out_while_others_match() -> None:
    boxes = torch.cat([corners_from_priors(PRIORS[1:2]), torch.tensor([[0.24, 0.24, 0.26, 0.26]])])
    result = match(boxes, torch.full((2, 10), float("nan")), PRIORS)
    assert result.labels.tolist() == [0, 1, 0]


def test_forced_best_prior_between_ignore_and_positive_iou() -> None:
    face = torch.tensor([[0.4, 0.4, 0.6, 0.45]])  # inside the prior (0.4..0.6), IoU 0.25
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.9, 0.1, 0.1]])
    result = match(face, NO_LANDMARKS, priors)
    assert result.labels.tolist() == [1, 0]
    torch.testing.assert_close(result.boxes_encoded[0], encode_boxes(face[0], priors[0]))
    # Not forced when the face's best IoU falls below ignore_iou.
    assert match(face, NO_LANDMARKS, priors, ignore_iou=0.3).labels.sum() == 0


def test_every_prior_over_positive_iou_is_positive() -> None:
    face = torch.tensor([[0.3, 0.3, 0.7, 0.7]])
    priors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.3, 0.3], [0.5, 0.5, 0.1, 0.1]])
    result = match(face, NO_LANDMARKS, priors)  # IoU 1.0, 0.5625, 0.0625
    assert result.labels.tolist() == [1, 1, 0]


def test_two_faces_competing_for_one_prior() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    face_a = torch.tensor([0.4, 0.4, 0.6, 0.6])  # exactly prior 0
    face_b = torch.tensor([0.41, 0.4, 0.61, 0.6])  # best prior is also prior 0
    boxes = torch.stack([face_a, face_b])
    result = match(boxes, torch.full((2, 10), float("nan")), priors)
    assert result.labels.tolist() == [1, 1, 0]
    # Both faces claim prior 0; the later one wins, as the original in-order assignment.
    torch.testing.assert_close(result.boxes_encoded[0], encode_boxes(face_b, priors[0]))
    # Prior 1 is claimed by nobody and takes the face it overlaps most (face b).
    torch.testing.assert_close(result.boxes_encoded[1], encode_boxes(face_b, priors[1]))


def test_forced_face_overrides_the_prior_best_overlap() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.14, 0.14]])
    big = torch.tensor([0.4, 0.4, 0.6, 0.6])  # IoU 1.0 with prior 0, 0.49 with prior 1
    small = torch.tensor([0.46, 0.46, 0.54, 0.54])  # IoU 0.16 with prior 0, 0.327 with prior 1
    result = match(torch.stack([big, small]), torch.full((2, 10), float("nan")), priors)
    assert result.labels.tolist() == [1, 1]
    torch.testing.assert_close(result.boxes_encoded[0], encode_boxes(big, priors[0]))
    # Prior 1 overlaps the big face most, but it is the small face's best prior.
    torch.testing.assert_close(result.boxes_encoded[1], encode_boxes(small, priors[1]))


def test_no_faces_gives_background_and_zero_targets() -> None:
    result = match(torch.zeros(0, 4), torch.zeros(0, 10), PRIORS)
    assert result.labels.tolist() == [0, 0, 0]
    assert result.boxes_encoded.shape == (3, 4) and torch.all(result.boxes_encoded == 0)
    assert result.landmarks_encoded.shape == (3, 10) and torch.all(result.landmarks_encoded == 0)
    assert not result.landmark_valid.any()


def test_match_batch_stacks_mappings_and_objects() -> None:
    box = corners_from_priors(PRIORS[:1])
    targets = [
        {"boxes": box, "landmarks": landmarks_inside(box[0])},
        SimpleNamespace(boxes=torch.zeros(0, 4), landmarks=torch.zeros(0, 10)),
    ]
    result = match_batch(targets, PRIORS)
    assert result.labels.shape == (2, 3)
    assert result.boxes_encoded.shape == (2, 3, 4)
    assert result.landmarks_encoded.shape == (2, 3, 10)
    assert result.landmark_valid.tolist() == [[True, False, False], [False, False, False]]
    assert result.labels.tolist() == [[1, 0, 0], [0, 0, 0]]


def reference_match(boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Labels by the rule, one face and one prior at a time (positive 0.35, forcing from 0.2)."""
    corners = corners_from_priors(priors)
    iou = torch.zeros(len(boxes), len(priors))
    for f, box in enumerate(boxes):
        for a, prior in enumerate(corners):
            w = (torch.minimum(box[2], prior[2]) - torch.maximum(box[0], prior[0])).clamp(min=0)
            h = (torch.minimum(box[3], prior[3]) - torch.maximum(box[1], prior[1])).clamp(min=0)
            inter = w * h
            area_box = (box[2] - box[0]) * (box[3] - box[1])
            area_prior = (prior[2] - prior[0]) * (prior[3] - prior[1])
            iou[f, a] = inter / (area_box + area_prior - inter)
    overlap = iou.max(dim=0).values.clone()
    for f in range(len(boxes)):
        best = int(iou[f].argmax())
        if iou[f, best] >= 0.2:
            overlap[best] = 2.0
    return (overlap >= 0.35).long()


def test_labels_agree_with_a_plain_loop_on_random_faces() -> None:
    generator = torch.Generator().manual_seed(0)
    priors = make_priors((64, 64))
    for _ in range(5):
        top_left = 0.8 * torch.rand(6, 2, generator=generator)
        size = 0.02 + 0.3 * torch.rand(6, 2, generator=generator)
        boxes = torch.cat([top_left, top_left + size], dim=1)
        result = match(boxes, torch.full((6, 10), float("nan")), priors)
        assert torch.equal(result.labels, reference_match(boxes, priors))
