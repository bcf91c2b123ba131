"""The reference training augmentation: geometry of boxes and landmarks through every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featherface.data.augment import (
    CROP_SCALES,
    MEAN_RGB,
    EvalTransform,
    TrainAugmentation,
    centres_inside,
    flip_horizontal,
    mirror,
    pad_to_square,
    photometric_distort,
    random_square_crop,
    resize_with_random_interpolation,
)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _faces(
    rng: np.random.Generator, height: int, width: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random boxes within the image with landmarks inside their box; every third face has
    NaN landmarks."""
    sizes = rng.uniform(4, min(height, width) / 2, (count, 1)).astype(np.float32)
    corners = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - sizes)
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    fractions = rng.uniform(0.1, 0.9, (count, 5, 2))
    points = boxes[:, None, :2] + fractions * (boxes[:, None, 2:] - boxes[:, None, :2])
    landmarks = points.reshape(count, 10).astype(np.float32)
    landmarks[::3] = np.nan
    return boxes, landmarks


def test_flip_swaps_points_and_mirrors_coordinates() -> None:
    image = _image(4, 10)
    boxes = np.array([[1, 0, 4, 3]], dtype=np.float32)
    landmarks = np.array([[2, 1, 3, 1, 2.5, 2, 2, 3, 3, 3]], dtype=np.float32)
    flipped, boxes_f, landmarks_f = flip_horizontal(image, boxes, landmarks)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_array_equal(boxes_f, [[6, 0, 9, 3]])
    # Point 0 (left eye) becomes the mirror of point 1 and so on: eyes and mouth corners swap.
    np.testing.assert_array_equal(landmarks_f, [[7, 1, 8, 1, 7.5, 2, 7, 3, 8, 3]])


def test_flip_twice_is_identity_and_keeps_nan() -> None:
    rng = np.random.default_rng(1)
    image = _image(30, 40)
    boxes = rng.integers(0, 40, (6, 4)).astype(np.float32)
    landmarks = (rng.integers(0, 80, (6, 10)) / 2).astype(np.float32)
    landmarks[2] = np.nan
    once = flip_horizontal(image, boxes, landmarks)
    twice = flip_horizontal(*once)
    for before, after in zip((image, boxes, landmarks), twice, strict=True):
        np.testing.assert_array_equal(before, after)
    assert np.isnan(once[2][2]).all()


def test_mirror_flips_about_half_the_time() -> None:
    image, boxes = _image(8, 8), np.array([[0, 0, 2, 2]], dtype=np.float32)
    landmarks = np.full((1, 10), np.nan, dtype=np.float32)
    flips = [mirror(image, boxes, landmarks, np.random.default_rng(s))[1][0, 0] for s in range(200)]
    assert set(flips) == {0.0, 6.0}
    assert 60 < flips.count(6.0) < 140


def test_centres_inside_is_strict() -> None:
    boxes = np.array([[0, 0, 20, 20], [8, 8, 12, 12], [15, 15, 25, 25], [30, 0, 40, 10]], "f4")
    np.testing.assert_array_equal(
        centres_inside(boxes, (10, 0, 30, 30)), [False, False, True, False]
    )


@pytest.mark.parametrize("seed", range(20))
def test_crop_keeps_exactly_faces_with_centre_inside(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = _image(120, 160, seed)
    boxes, landmarks = _faces(rng, 120, 160, 12)
    crop = random_square_crop(image, boxes, landmarks, 320, rng)
    assert not crop.pad_image_flag
    x1, y1, x2, y2 = crop.roi
    side = x2 - x1
    assert y2 - y1 == side and side in {int(s * 120) for s in CROP_SCALES}
    np.testing.assert_array_equal(crop.image, image[y1:y2, x1:x2])
    np.testing.assert_array_equal(crop.keep, np.flatnonzero(centres_inside(boxes, crop.roi)))
    shifted = boxes[crop.keep] - np.array([x1, y1, x1, y1], dtype=np.float32)
    np.testing.assert_allclose(crop.boxes, np.clip(shifted, 0, side))
    expected = np.clip(landmarks[crop.keep] - np.tile([x1, y1], 5).astype(np.float32), 0, side)
    np.testing.assert_allclose(crop.landmarks, expected)
    assert (np.isnan(crop.landmarks) == np.isnan(landmarks[crop.keep])).all()


def test_crop_fails_when_every_face_is_larger_than_any_crop() -> None:
    image = _image(60, 100)
    boxes = np.array([[0, 0, 100, 60]], dtype=np.float32)
    landmarks = np.full((1, 10), np.nan, dtype=np.float32)
    crop = random_square_crop(image, boxes, landmarks, 320, np.random.default_rng(0))
    assert crop.pad_image_flag and crop.roi is None
    assert crop.image is image and crop.boxes is boxes
    no_faces = np.zeros((0, 4), dtype=np.float32), np.zeros((0, 10), dtype=np.float32)
    assert random_square_crop(image, *no_faces, 320, np.random.default_rng(0)).pad_image_flag


def test_pad_to_square_fills_with_the_mean() -> None:
    padded = pad_to_square(_image(3, 5))
    assert padded.shape == (5, 5, 3)
    assert (padded[3:] == np.array(MEAN_RGB, dtype=np.uint8)).all()


@pytest.mark.parametrize("seed", range(4))
def test_pad_path_of_the_full_augmentation(seed: int) -> None:
    image = _image(120, 200, seed)
    boxes = np.array([[0, 0, 200, 120]], dtype=np.float32)
    landmarks = np.array([[60, 40, 140, 40, 100, 60, 70, 90, 130, 90]], dtype=np.float32)
    tensor, boxes_t, landmarks_t = TrainAugmentation(100)(
        image, boxes, landmarks, np.random.default_rng(seed)
    )
    assert tensor.shape == (3, 100, 100)
    # The box spans the whole width, so it looks the same mirrored or not.
    torch.testing.assert_close(boxes_t, torch.tensor([[0.0, 0.0, 1.0, 0.6]]))
    assert landmarks_t[0, 1].item() == pytest.approx(0.2)
    # The pad (network mean) becomes zero; rows well below the image edge at 60 px.
    assert tensor[:, 70:].abs().max().item() <= 1.0


@pytest.mark.parametrize("seed", range(40))
def test_train_targets_lie_in_unit_square_with_landmarks_in_their_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(40, 200)), int(rng.integers(40, 200))
    boxes, landmarks = _faces(rng, height, width, int(rng.integers(1, 8)))
    tensor, boxes_t, landmarks_t = TrainAugmentation(64)(
        _image(height, width, seed), boxes, landmarks, rng
    )
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert boxes_t.dtype == landmarks_t.dtype == torch.float32
    assert 1 <= len(boxes_t) == len(landmarks_t) <= len(boxes)
    assert ((boxes_t >= 0) & (boxes_t <= 1)).all()
    assert (boxes_t[:, :2] <= boxes_t[:, 2:]).all()
    missing = landmarks_t.isnan()
    assert (missing.all(dim=1) | ~missing.any(dim=1)).all()
    known = landmarks_t[~missing.any(dim=1)].reshape(-1, 5, 2)
    inside_boxes = boxes_t[~missing.any(dim=1)]
    assert ((known >= 0) & (known <= 1)).all()
    eps = 1e-6
    assert (known >= inside_boxes[:, None, :2] - eps).all()
    assert (known <= inside_boxes[:, None, 2:] + eps).all()


def test_train_augmentation_keeps_nan_landmarks() -> None:
    rng = np.random.default_rng(3)
    boxes, _ = _faces(rng, 100, 100, 5)
    landmarks = np.full((5, 10), np.nan, dtype=np.float32)
    _, boxes_t, landmarks_t = TrainAugmentation(32)(_image(100, 100), boxes, landmarks, rng)
    assert len(boxes_t) >= 1 and landmarks_t.isnan().all()


def test_train_augmentation_is_a_function_of_the_generator() -> None:
    rng = np.random.default_rng(5)
    boxes, landmarks = _faces(rng, 90, 130, 4)
    image = _image(90, 130)
    augment = TrainAugmentation(48)
    first = augment(image, boxes, landmarks, np.random.default_rng(7))
    second = augment(image, boxes, landmarks, np.random.default_rng(7))
    other = augment(image, boxes, landmarks, np.random.default_rng(8))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)
    assert not torch.equal(first[0], other[0])


def test_distortion_keeps_grey_grey_and_changes_colours() -> None:
    grey = np.repeat(np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5, 1), 3, axis=2)
    colour = _image(16, 16)
    changed = 0
    for seed in range(30):
        out = photometric_distort(grey, np.random.default_rng(seed))
        assert out.shape == grey.shape and out.dtype == np.uint8
        # Saturation and hue leave a grey pixel grey (up to HSV rounding).
        assert np.abs(out.astype(int) - out[:, :, :1].astype(int)).max() <= 1
        changed += not np.array_equal(
            photometric_distort(colour, np.random.default_rng(seed)), colour
        )
    assert changed >= 25


def test_resize_uses_several_interpolations() -> None:
    image = _image(37, 53)
    outputs = {
        resize_with_random_interpolation(image, 16, np.random.default_rng(s)).tobytes()
        for s in range(40)
    }
    assert len(outputs) == 5
    out = resize_with_random_interpolation(image, 16, np.random.default_rng(0))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_eval_transform_resizes_and_normalises() -> None:
    image = _image(50, 100)
    boxes = np.array([[10, 5, 30, 25]], dtype=np.float32)
    landmarks = np.full((1, 10), np.nan, dtype=np.float32)
    tensor, boxes_t, landmarks_t = EvalTransform(32)(image, boxes, landmarks)
    assert tensor.shape == (3, 32, 32)
    torch.testing.assert_close(boxes_t, torch.tensor([[0.1, 0.1, 0.3, 0.5]]))
    assert landmarks_t.isnan().all()
    tensor, _, _ = EvalTransform(None)(image, boxes, landmarks)
    assert tensor.shape == (3, 50, 100)
