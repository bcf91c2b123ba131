"""Post-processing: decoding to pixels, threshold, NMS, limits."""

from __future__ import annotations

import torch

from featherface.detection.codec import encode_boxes, encode_landmarks
from featherface.detection.postprocess import postprocess, select
from featherface.detection.priors import prior_boxes as make_priors

SIZE = (64, 96)  # (height, width)
PRIORS = make_priors(SIZE)
NUM = PRIORS.shape[0]
LOW, HIGH = -8.0, 8.0  # logits of a confident "no" and "yes"


def empty_outputs(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero offsets, every prior confidently background."""
    conf = torch.zeros(batch, NUM, 2)
    conf[..., 0] = HIGH
    conf[..., 1] = LOW
    return torch.zeros(batch, NUM, 4), conf, torch.zeros(batch, NUM, 10)


def predict(outputs: tuple, index: int, box: torch.Tensor, landmarks: torch.Tensor) -> None:
    """Make prior ``index`` of image 0 predict ``box``/``landmarks`` (normalised) confidently."""
    loc, conf, landm = outputs
    loc[0, index] = encode_boxes(box, PRIORS[index])
    landm[0, index] = encode_landmarks(landmarks, PRIORS[index])
    conf[0, index] = torch.tensor([LOW, HIGH])


def test_perfect_prediction_gives_the_ground_truth_in_pixels() -> None:
    pixels = torch.tensor([20.0, 10.0, 44.0, 40.0])  # x1, y1, x2, y2
    landmark_pixels = torch.tensor([26.0, 20.0, 38.0, 20.0, 32.0, 26.0, 27.0, 33.0, 37.0, 33.0])
    scale = torch.tensor([96.0, 64.0])
    outputs = empty_outputs()
    predict(outputs, 5, pixels / scale.repeat(2), landmark_pixels / scale.repeat(5))
    (detections,) = postprocess(outputs, PRIORS, SIZE)
    assert detections.boxes.shape == (1, 4)
    torch.testing.assert_close(detections.boxes[0], pixels, atol=1e-3, rtol=0)
    torch.testing.assert_close(detections.landmarks[0], landmark_pixels, atol=1e-3, rtol=0)
    torch.testing.assert_close(detections.scores, torch.softmax(torch.tensor([LOW, HIGH]), 0)[1:])


def test_zero_offsets_scale_the_prior_to_pixels() -> None:
    outputs = empty_outputs()
    outputs[1][0, 0] = torch.tensor([LOW, HIGH])
    (detections,) = postprocess(outputs, PRIORS, SIZE)
    # Prior 0: centre (4, 4) pixels, side 16 -> (x1, y1, x2, y2) = (-4, -4, 12, 12).
    torch.testing.assert_close(detections.boxes[0], torch.tensor([-4.0, -4.0, 12.0, 12.0]))
    torch.testing.assert_close(detections.landmarks[0], torch.full((10,), 4.0))


def test_duplicates_are_suppressed() -> None:
    box = torch.tensor([0.2, 0.2, 0.45, 0.6])
    outputs = empty_outputs()
    predict(outputs, 3, box, torch.full((10,), 0.3))
    predict(outputs, 4, box + 0.005, torch.full((10,), 0.3))
    outputs[1][0, 4] = torch.tensor([LOW, HIGH - 1])  # the second copy scores lower
    (detections,) = postprocess(outputs, PRIORS, SIZE)
    assert detections.boxes.shape == (1, 4)
    torch.testing.assert_close(detections.boxes[0], box * torch.tensor([96.0, 64.0, 96.0, 64.0]))
    (kept_both,) = postprocess(outputs, PRIORS, SIZE, nms_iou=0.99)
    assert kept_both.boxes.shape == (2, 4)


def test_threshold_and_sorting() -> None:
    generator = torch.Generator().manual_seed(0)
    loc = 0.1 * torch.randn(2, NUM, 4, generator=generator)
    conf = torch.rand(2, NUM, 2, generator=generator)
    conf = conf / conf.sum(-1, keepdim=True)
    landm = torch.randn(2, NUM, 10, generator=generator)
    results = postprocess(
        (loc, conf, landm), PRIORS, SIZE, score_threshold=0.7, scores_are_probabilities=True
    )
    assert len(results) == 2
    for detections in results:
        assert len(detections.scores) > 0
        assert torch.all(detections.scores > 0.7)
        assert torch.all(detections.scores[:-1] >= detections.scores[1:])
    nothing = postprocess((loc, conf, landm), PRIORS, SIZE, 1.0, scores_are_probabilities=True)
    assert all(d.boxes.shape == (0, 4) and d.landmarks.shape == (0, 10) for d in nothing)


def test_top_k_and_keep_k() -> None:
    boxes = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(6)])
    scores = torch.linspace(0.9, 0.4, 6)
    landmarks = torch.zeros(6, 10)
    assert select(boxes, scores, landmarks, top_k=4).scores.shape == (4,)
    kept = select(boxes, scores, landmarks, keep_k=2)
    torch.testing.assert_close(kept.scores, scores[:2])


def test_nms_uses_plus_one_pixel_iou() -> None:
    # Plain IoU 36 / 126 = 0.286; with +1 pixel sides 50 / 150 = 0.333.
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores = torch.tensor([0.9, 0.8])
    assert select(boxes, scores, torch.zeros(2, 10), nms_iou=0.3).scores.shape == (1,)
    assert select(boxes, scores, torch.zeros(2, 10), nms_iou=0.34).scores.shape == (2,)


def test_per_image_sizes() -> None:
    outputs = empty_outputs(batch=2)
    outputs[1][:, 0] = torch.tensor([LOW, HIGH])
    first, second = postprocess(outputs, PRIORS, [(64, 96), (128, 192)])
    torch.testing.assert_close(second.boxes, 2 * first.boxes)
