"""Face plans: what each face of an image will be and where it goes.

A plan fixes a face's size, look, rotation, squash, blur, local light and occluder before it is
rendered; :func:`place` then gives the plans box positions, largest first, with
:func:`find_spot`, so that no face is buried under another. Pixel coordinates are continuous,
pixel ``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from featherface.data.synthetic.background import Event
from featherface.data.synthetic.face import FaceStyle, head_half_extents, sample_style
from featherface.params import SyntheticConfig

SPOT_PROB = 0.08
SHRINK = 0.75


@dataclass(frozen=True)
class FacePlan:
    """One face before rendering. ``height`` is the box height in px, ``blur_sigma`` the face's
    own blur in px, ``light`` a local light on it (see :func:`.lighting.lighting`; 0 = none),
    ``left``/``top`` the planned box corner (set by placement)."""

    style: FaceStyle
    height: float
    rotation_deg: float
    squash: float
    blur_sigma: float
    light: float
    occluded: bool
    left: float = 0.0
    top: float = 0.0


def sample_plan(
    rng: np.random.Generator, config: SyntheticConfig, size: tuple[int, int]
) -> FacePlan:
    """Height log-uniform in the config's range (at most 0.8 of the shorter image side);
    rotation ``N(0, (max/3)^2)`` clipped to ``±rotation_max_deg``; squash ``1 - |N(0, 0.12^2)|``
    clipped to >= 0.6; face blur ``sigma = h * U(0.01, 0.08)`` with probability ``blur_prob``;
    with probability ``SPOT_PROB`` a local shadow of strength U(0.6, 0.8) or glare of strength
    U(0.5, 0.75), equally likely; an occluder with probability ``occlusion_prob``."""
    low, high = math.log(config.min_face_height), math.log(config.max_face_height)
    height = min(math.exp(rng.uniform(low, high)), 0.8 * min(size))
    style = sample_style(rng, config.glasses_prob)
    limit = config.rotation_max_deg
    rotation = float(np.clip(rng.normal(0.0, limit / 3.0), -limit, limit)) if limit > 0 else 0.0
    squash = max(0.6, 1.0 - abs(rng.normal(0.0, 0.12)))
    blur = height * rng.uniform(0.01, 0.08) if rng.random() < config.blur_prob else 0.0
    light = 0.0
    if rng.random() < SPOT_PROB:
        light = -rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(0.5, 0.75)
    occluded = bool(rng.random() < config.occlusion_prob)
    return FacePlan(style, height, rotation, float(squash), float(blur), float(light), occluded)


def face_count(rng: np.random.Generator, config: SyntheticConfig, event: Event) -> int:
    """``min + floor((max - min + 1) * u ** event.crowd_bias)``, at most ``max_faces``."""
    spread = config.max_faces - config.min_faces + 1
    count = config.min_faces + int(spread * rng.random() ** event.crowd_bias)
    return min(count, config.max_faces)


def place(
    rng: np.random.Generator, plans: list[FacePlan], size: tuple[int, int], min_height: float
) -> list[FacePlan]:
    """Give each plan a box position, largest first; shrink by ``SHRINK`` when no spot is found
    (scaling its blur too) and drop a face that would fall below ``min_height``."""
    placed: list[FacePlan] = []
    boxes: list[tuple[float, float, float, float]] = []
    footprints: list[tuple[float, float, float, float]] = []
    for plan in sorted(plans, key=lambda p: -p.height):
        while plan.height >= min_height:
            half_w, half_h = head_half_extents(
                plan.style.aspect, plan.squash, math.radians(plan.rotation_deg)
            )
            box = (0.0, 0.0, plan.height * half_w / half_h, plan.height)
            spot = find_spot(rng, box[2:], size, boxes, footprints)
            if spot is not None:
                placed.append(replace(plan, left=spot[0], top=spot[1]))
                boxes.append(spot + box[2:])
                footprints.append(_footprint(spot + box[2:], plan.occluded))
                break
            plan = replace(plan, height=plan.height * SHRINK, blur_sigma=plan.blur_sigma * SHRINK)
    return placed


def _footprint(
    box: tuple[float, float, float, float], occluded: bool
) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` that a face with box ``(x, y, w, h)`` may paint: 0.35 w beside it,
    0.45 h above (hair, hat) and 0.5 h below (neck, shoulders), plus half the larger side all
    round when it has an occluder."""
    x, y, w, h = box
    grow = 0.5 * max(w, h) if occluded else 0.0
    return x - 0.35 * w - grow, y - 0.45 * h - grow, x + 1.35 * w + grow, y + 1.5 * h + grow


def find_spot(
    rng: np.random.Generator,
    size: tuple[float, float],
    image_size: tuple[int, int],
    boxes: list[tuple[float, float, float, float]],
    footprints: list[tuple[float, float, float, float]],
    tries: int = 30,
) -> tuple[float, float] | None:
    """Top-left corner for a box of ``size = (w, h)`` inside the image: the first acceptable of
    ``tries`` uniform candidates, or None.

    Against every placed box ``(x, y, w, h)`` a candidate needs IoU <= 0.3 and an intersection
    of at most half of the smaller box; against every footprint ``(x0, y0, x1, y1)`` (what a
    nearer face's hair, shoulders and occluder may cover) an intersection of at most 0.3 of the
    new box. So no face is buried under another.
    """
    width, height = size
    if width > image_size[0] - 2 or height > image_size[1] - 2:
        return None
    xs = rng.uniform(1, image_size[0] - 1 - width, tries)
    ys = rng.uniform(1, image_size[1] - 1 - height, tries)
    candidates = np.stack([xs, ys, xs + width, ys + height], axis=1)
    placed = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    placed[:, 2:] += placed[:, :2]
    areas = (placed[:, 2] - placed[:, 0]) * (placed[:, 3] - placed[:, 1])
    area = width * height
    inter = _overlap(candidates, placed)
    iou = inter / (area + areas - inter)
    smaller = inter / np.minimum(area, areas)
    covered = _overlap(candidates, np.array(footprints, dtype=np.float64).reshape(-1, 4)) / area
    good = ((iou <= 0.3) & (smaller <= 0.5)).all(axis=1) & (covered <= 0.3).all(axis=1)
    if not good.any():
        return None
    first = int(np.argmax(good))
    return float(xs[first]), float(ys[first])


def _overlap(boxes: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Intersection areas, float64 ``[T, N]``, of ``boxes`` ``[T, 4]`` with ``rects`` ``[N, 4]``,
    all ``(x0, y0, x1, y1)``."""
    inter_w = np.minimum(boxes[:, None, 2], rects[None, :, 2]) - np.maximum(
        boxes[:, None, 0], rects[None, :, 0]
    )
    inter_h = np.minimum(boxes[:, None, 3], rects[None, :, 3]) - np.maximum(
        boxes[:, None, 1], rects[None, :, 1]
    )
    return np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
