"""The RetinaFace training augmentation, in numpy and Pillow.

It follows ``preproc`` of biubug6/Pytorch_Retinaface (``data/data_augment.py``): random square
crop -> photometric distortion -> pad to square (only when no crop succeeded) -> random
horizontal mirror -> resize to ``S x S`` with a random interpolation -> network input.

Conventions of every function here: ``image`` is ``uint8[H, W, 3]`` RGB; ``boxes`` is
``float32[F, 4]`` pixel ``(x1, y1, x2, y2)`` with ``x2 = x + w`` (the WIDER box corner plus its
size); ``landmarks`` is ``float32[F, 10]`` pixel ``(x0, y0, ..., x4, y4)`` for left eye, right
eye, nose, left and right mouth corner, a NaN row where a face has no landmarks (NaN passes
through every step). Randomness comes only from the ``numpy.random.Generator`` passed in.

What the training targets guarantee (:class:`TrainAugmentation`): every box and landmark
coordinate lies in ``[0, 1]`` and ``x1 <= x2``, ``y1 <= y2``. As in the reference, a kept face is
one whose centre lies inside the crop; its box is clipped to the crop and its landmarks are
clamped into the crop, so a landmark that lay inside its face's box still lies inside the clipped
box (clamping a point of ``[b1, b2]`` into ``[c1, c2]`` lands in ``[max(b1, c1), min(b2, c2)]``),
while a landmark annotated outside its box stays outside it, at most at the crop's edge.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from featherface.data.transforms import MEAN_BGR, to_network_input

CROP_SCALES: tuple[float, ...] = (0.3, 0.45, 0.6, 0.8, 1.0)
CROP_TRIES = 250
MEAN_RGB: tuple[int, int, int] = (int(MEAN_BGR[2]), int(MEAN_BGR[1]), int(MEAN_BGR[0]))
# The reference's cv2 list (linear, cubic, area, nearest, lanczos4) in Pillow's names; Pillow's
# filters widen their support when shrinking (antialiasing), cv2's linear and cubic do not.
INTERPOLATIONS: tuple[Image.Resampling, ...] = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.BOX,
    Image.Resampling.NEAREST,
    Image.Resampling.LANCZOS,
)
# Landmark order after a horizontal flip: the eyes (0, 1) and mouth corners (3, 4) swap.
MIRRORED_POINTS: tuple[int, ...] = (1, 0, 2, 4, 3)
# Pillow's hue channel spans 360 degrees in 256 steps; OpenCV's (the reference's) in 180.
_HUE_STEPS_PER_CV2_UNIT = 256.0 / 180.0


class CropResult(NamedTuple):
    """Output of :func:`random_square_crop`.

    ``keep``: ``int64[F']`` indices of the input faces that were kept (all of them when no crop
    succeeded); ``roi``: the crop ``(x1, y1, x2, y2)`` in input pixels, ``None`` when
    ``pad_image_flag`` is True (the image is returned whole and must be padded to square).
    """

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    keep: np.ndarray
    pad_image_flag: bool
    roi: tuple[int, int, int, int] | None


class SampleTransform(Protocol):
    """``(image, boxes, landmarks, rng) -> (Tensor[3, S, S], Tensor[F, 4], Tensor[F, 10])``."""

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[Tensor, Tensor, Tensor]: ...


def centres_inside(boxes: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``bool[F]``: box centre strictly inside ``roi``, ``x1 < (bx1 + bx2) / 2 < x2`` (and y)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    low, high = np.asarray(roi[:2]), np.asarray(roi[2:])
    return ((low < centres) & (centres < high)).all(axis=1)


def _wholly_inside(boxes: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``bool[F]``: a box of positive area lying within ``roi`` (the reference's IoF >= 1)."""
    x1, y1, x2, y2 = roi
    positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    within = (boxes[:, 0] >= x1) & (boxes[:, 1] >= y1) & (boxes[:, 2] <= x2) & (boxes[:, 3] <= y2)
    return positive & within


def shift_and_clip(
    boxes: np.ndarray, landmarks: np.ndarray, origin: tuple[int, int], width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move boxes and landmarks to a window at ``origin`` of size ``width x height``.

    ``p' = clip(p - origin, 0, size)`` per coordinate, for box corners and landmarks alike (the
    reference clips boxes to the crop and clamps landmarks into it); NaN stays NaN.
    """
    offset = np.asarray(origin, dtype=np.float32)
    limit = np.asarray((width, height), dtype=np.float32)
    points = boxes.reshape(-1, 2, 2) - offset
    boxes = np.clip(points, 0, limit).reshape(-1, 4).astype(np.float32)
    points = landmarks.reshape(-1, 5, 2) - offset
    landmarks = np.clip(points, 0, limit).reshape(-1, 10).astype(np.float32)
    return boxes, landmarks


def _try_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    roi: tuple[int, int, int, int],
    image_size: int,
    min_face_size: float,
) -> CropResult | None:
    """One try of the reference crop: ``None`` unless a face is wholly inside ``roi`` and one
    face whose centre is inside keeps ``(min(w, h) + 1) / side * image_size > min_face_size``."""
    if not _wholly_inside(boxes, roi).any():
        return None
    x1, y1, x2, y2 = roi
    side = x2 - x1
    keep = np.flatnonzero(centres_inside(boxes, roi))
    kept_boxes, kept_landmarks = shift_and_clip(boxes[keep], landmarks[keep], (x1, y1), side, side)
    sides = np.minimum(kept_boxes[:, 2] - kept_boxes[:, 0], kept_boxes[:, 3] - kept_boxes[:, 1])
    large = (sides + 1) / side * image_size > min_face_size
    if not large.any():
        return None
    crop = np.ascontiguousarray(image[y1:y2, x1:x2])
    return CropResult(crop, kept_boxes[large], kept_landmarks[large], keep[large], False, roi)


def random_square_crop(
    image: np.ndarray,
    boxes: np.ndarray,
    landmarks: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    min_face_size: float = 0.0,
) -> CropResult:
    """The reference ``_crop``: up to :data:`CROP_TRIES` random square crops.

    Each try draws ``scale`` from :data:`CROP_SCALES`, ``side = int(scale * min(H, W))`` and a
    corner ``left ~ U{0, W - side - 1}`` (0 when ``side == W``; likewise ``top``). A try succeeds
    when at least one box lies wholly inside the crop; it keeps the faces whose centre is
    strictly inside (:func:`centres_inside`), clips and shifts them (:func:`shift_and_clip`), and
    drops those whose ``(min(w, h) + 1) / side * image_size`` (their size in training pixels, with
    the reference's +1) is not above ``min_face_size`` (0 in the reference, so none is dropped);
    it fails if none is left. When every try fails (always for an image without faces, or when
    every face is larger than the largest crop), the input comes back unchanged with
    ``pad_image_flag=True``.
    """
    height, width = image.shape[:2]
    if len(boxes):
        short_side = min(width, height)
        for _ in range(CROP_TRIES):
            side = int(CROP_SCALES[rng.integers(len(CROP_SCALES))] * short_side)
            left = int(rng.integers(width - side)) if width > side else 0
            top = int(rng.integers(height - side)) if height > side else 0
            roi = (left, top, left + side, top + side)
            result = _try_crop(image, boxes, landmarks, roi, image_size, min_face_size)
            if result is not None:
                return result
    return CropResult(image, boxes, landmarks, np.arange(len(boxes)), True, None)


def _affine_lut(alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``uint8[256]``: ``v -> trunc(clip(alpha * v + beta, 0, 255))`` (reference ``_convert``)."""
    values = np.arange(256, dtype=np.float64) * alpha + beta
    return np.clip(values, 0, 255).astype(np.uint8)


def _saturation_hue(image: np.ndarray, saturation: float | None, hue: int | None) -> np.ndarray:
    """Scale HSV saturation by ``saturation`` and rotate hue by ``hue`` OpenCV units (2 deg)."""
    h, s, v = Image.fromarray(image).convert("HSV").split()
    if saturation is not None:
        s = s.point(_affine_lut(alpha=saturation).tolist())
    if hue is not None:
        shift = round(hue * _HUE_STEPS_PER_CV2_UNIT)
        h = h.point(((np.arange(256) + shift) % 256).tolist())
    return np.asarray(Image.merge("HSV", (h, s, v)).convert("RGB"))


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reference ``_distort``: each of four changes applied with probability 1/2.

    Brightness ``v + U(-32, 32)``, contrast ``v * U(0.5, 1.5)`` (both on RGB, truncated to
    uint8 after each), saturation ``s * U(0.5, 1.5)`` and hue ``h + U{-18..18}`` OpenCV units
    (+-36 degrees) in HSV. With probability 1/2 the order is brightness, contrast, saturation,
    hue; otherwise brightness, saturation, hue, contrast. Unlike the reference, the HSV round
    trip is skipped when neither saturation nor hue changes.
    """
    contrast_first = rng.random() < 0.5
    brightness = rng.uniform(-32, 32) if rng.random() < 0.5 else None
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = int(rng.integers(-18, 19)) if rng.random() < 0.5 else None

    if brightness is not None:
        image = _affine_lut(beta=brightness)[image]
    if contrast is not None and contrast_first:
        image = _affine_lut(alpha=contrast)[image]
    if saturation is not None or hue is not None:
        image = _saturation_hue(image, saturation, hue)
    if contrast is not None and not contrast_first:
        image = _affine_lut(alpha=contrast)[image]
    return image


def pad_to_square(image: np.ndarray, fill: tuple[int, int, int] = MEAN_RGB) -> np.ndarray:
    """``uint8[L, L, 3]``, ``L = max(H, W)``: the image at the top-left, the rest ``fill``.

    The default fill is the network mean, which :func:`to_network_input` maps to zero.
    """
    height, width = image.shape[:2]
    side = max(height, width)
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[:] = np.asarray(fill, dtype=np.uint8)
    square[:height, :width] = image
    return square


def flip_horizontal(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror left-right: ``x1' = W - x2``, ``x2' = W - x1``, landmark ``x' = W - x`` with the
    points reordered by :data:`MIRRORED_POINTS` (left eye <-> right eye, mouth corners swap)."""
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    points = landmarks.reshape(-1, 5, 2)[:, list(MIRRORED_POINTS)].copy()
    points[:, :, 0] = width - points[:, :, 0]
    return flipped, boxes, points.reshape(-1, 10)


def mirror(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`flip_horizontal` with probability 1/2, else the inputs unchanged."""
    if rng.random() < 0.5:
        return flip_horizontal(image, boxes, landmarks)
    return image, boxes, landmarks


def resize_with_random_interpolation(
    image: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``uint8[size, size, 3]``, resampled with one of :data:`INTERPOLATIONS` drawn uniformly."""
    method = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
    return np.asarray(Image.fromarray(image).resize((size, size), method))


def normalise_targets(
    boxes: np.ndarray, landmarks: np.ndarray, width: int, height: int
) -> tuple[Tensor, Tensor]:
    """Pixels -> fractions of the image: ``x / width``, ``y / height``; float32 tensors."""
    scale = np.asarray((width, height), dtype=np.float32)
    boxes = (boxes.reshape(-1, 2, 2) / scale).reshape(-1, 4).astype(np.float32)
    landmarks = (landmarks.reshape(-1, 5, 2) / scale).reshape(-1, 10).astype(np.float32)
    return torch.from_numpy(boxes), torch.from_numpy(landmarks)


def _as_targets(boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 10)
    if len(boxes) != len(landmarks):
        raise ValueError(f"{len(boxes)} boxes but {len(landmarks)} landmark rows")
    return boxes, landmarks


class TrainAugmentation:
    """The reference training ``preproc`` producing ``S x S`` samples (``S = image_size``).

    ``(image, boxes, landmarks, rng) -> (Tensor[3, S, S], Tensor[F', 4], Tensor[F', 10])``:
    :func:`random_square_crop` -> :func:`photometric_distort` -> when no crop succeeded, boxes
    and landmarks clipped to the image (a guard the reference lacks) and :func:`pad_to_square`
    -> :func:`mirror` -> :func:`resize_with_random_interpolation` -> :func:`to_network_input`;
    targets are divided by the square's side. ``F' <= F`` faces remain (see the module
    docstring for what the targets guarantee).
    """

    def __init__(self, image_size: int, min_face_size: float = 0.0) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = image_size
        self.min_face_size = min_face_size

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[Tensor, Tensor, Tensor]:
        boxes, landmarks = _as_targets(boxes, landmarks)
        crop = random_square_crop(image, boxes, landmarks, self.image_size, rng, self.min_face_size)
        image, boxes, landmarks = crop.image, crop.boxes, crop.landmarks
        image = photometric_distort(image, rng)
        if crop.pad_image_flag:
            height, width = image.shape[:2]
            boxes, landmarks = shift_and_clip(boxes, landmarks, (0, 0), width, height)
            image = pad_to_square(image)
        image, boxes, landmarks = mirror(image, boxes, landmarks, rng)
        side = image.shape[0]
        image = resize_with_random_interpolation(image, self.image_size, rng)
        boxes_t, landmarks_t = normalise_targets(boxes, landmarks, side, side)
        return to_network_input(image), boxes_t, landmarks_t


class EvalTransform:
    """Deterministic transform for validation loss: no crop, colour change or flip.

    With ``image_size`` the image is resized (bilinear) to ``S x S`` ignoring its aspect ratio,
    the same square input the training samples have (the loss sees targets as fractions of the
    image, so they need no change); with ``None`` it keeps its size (batching then needs equal
    sizes). Targets are divided by the original width and height and are not clipped. ``rng`` is
    ignored.
    """

    def __init__(self, image_size: int | None) -> None:
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = image_size

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        boxes, landmarks = _as_targets(boxes, landmarks)
        height, width = image.shape[:2]
        if self.image_size is not None:
            size = (self.image_size, self.image_size)
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        boxes_t, landmarks_t = normalise_targets(boxes, landmarks, width, height)
        return to_network_input(image), boxes_t, landmarks_t
