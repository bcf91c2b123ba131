"""Render one whole synthetic image and its face rows.

Every image draws its randomness from ``numpy.random.default_rng([seed, split_code, index])``
(``split_code`` 0 for train, 1 for val), so an image depends only on the config, its split and its
index.

One image: pick an event and a size, draw the background and distractors, plan the faces (size,
look, rotation, squash, blur, local light, occluder), place them largest first (smaller faces
shrink by 0.75 when no spot is found, and are dropped below ``min_face_height``), paint them
smallest first so near (large) faces are in front, each followed by its occluder, on a
:class:`.canvas.Canvas` that measures how much of each face ends up hidden, then apply the camera.
The attributes come from :mod:`.difficulty`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from featherface.data.schema import LANDMARK_COLUMNS
from featherface.data.synthetic.background import EVENTS, Event, draw_background
from featherface.data.synthetic.canvas import Box, Canvas, Layer
from featherface.data.synthetic.difficulty import combined_sigma, face_attributes
from featherface.data.synthetic.distractors import draw_distractors, make_occluder
from featherface.data.synthetic.face_render import render_face
from featherface.data.synthetic.lighting import finish, lighting
from featherface.data.synthetic.planning import FacePlan, face_count, place, sample_plan
from featherface.params import SyntheticConfig

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1}


@dataclass(frozen=True)
class RenderedImage:
    """A rendered image, its event and its face rows (table columns except ``image_id``)."""

    image: Image.Image
    event: Event
    faces: list[dict[str, float]]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: ``default_rng([seed, split_code, index])``."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _box(head: np.ndarray, offset: tuple[int, int], size: tuple[int, int]) -> Box:
    """Integer ``(x, y, w, h)`` around the head extent moved by ``offset``, clipped to the image,
    ``w, h >= 1``: ``x = floor(x0)``, ``w = ceil(x1) - x`` and likewise in y."""
    x0 = min(max(math.floor(head[0] + offset[0]), 0), size[0] - 1)
    y0 = min(max(math.floor(head[1] + offset[1]), 0), size[1] - 1)
    x1 = max(min(math.ceil(head[2] + offset[0]), size[0]), x0 + 1)
    y1 = max(min(math.ceil(head[3] + offset[1]), size[1]), y0 + 1)
    return x0, y0, x1 - x0, y1 - y0


def _paint(
    rng: np.random.Generator,
    canvas: Canvas,
    plans: list[FacePlan],
    event: Event,
    size: tuple[int, int],
) -> list[tuple[FacePlan, Box, np.ndarray]]:
    """Render and paste the faces smallest first, each followed by its occluder if it has one.

    Returns ``(plan, box, landmarks [5, 2] in image pixels)`` in painting order.
    """
    painted = []
    for plan in sorted(plans, key=lambda p: p.height):
        patch = render_face(
            plan.style, plan.height, plan.rotation_deg, plan.squash, plan.blur_sigma
        )
        centre = 0.5 * (patch.head[:2] + patch.head[2:])
        target = (plan.left + 0.5 * (patch.head[2] - patch.head[0]), plan.top + 0.5 * plan.height)
        offset = (round(target[0] - centre[0]), round(target[1] - centre[1]))
        box = _box(patch.head, offset, size)
        canvas.add_face(Layer(patch.image, *offset), box)
        landmarks = patch.landmarks + offset
        if plan.occluded:
            canvas.paste(make_occluder(rng, box, landmarks, event.palette))
        painted.append((plan, box, landmarks))
    return painted


def render_image(config: SyntheticConfig, split: str, index: int) -> RenderedImage:
    """Render image ``index`` of ``split`` (steps in the module docstring).

    The event is uniform over :data:`EVENTS`; 0 to ``distractors_max`` distractors are 8 px to
    half the shorter side high; local lights have a radius of 0.6 box heights; the whole image
    is blurred by sigma ~ U(0.6, 2) px with probability ``blur_prob / 2`` and gets noise of
    standard deviation U(1, 7) levels.
    """
    rng = image_rng(config.seed, split, index)
    event = EVENTS[int(rng.integers(len(EVENTS)))]
    size = (
        int(rng.integers(config.min_image_size, config.max_image_size + 1)),
        int(rng.integers(config.min_image_size, config.max_image_size + 1)),
    )
    background = draw_background(rng, event, *size)
    distractor_heights = (
        config.min_face_height,
        max(config.min_face_height, min(config.max_face_height, 0.5 * min(size))),
    )
    draw_distractors(
        rng, background, int(rng.integers(config.distractors_max + 1)), distractor_heights
    )
    plans = [sample_plan(rng, config, size) for _ in range(face_count(rng, config, event))]
    canvas = Canvas(background)
    painted = _paint(rng, canvas, place(rng, plans, size, config.min_face_height), event, size)
    spots = [
        (box[0] + 0.5 * box[2], box[1] + 0.5 * box[3], 0.6 * box[3], plan.light)
        for plan, box, _ in painted
        if plan.light != 0.0
    ]
    light = lighting(rng, size[0], size[1], spots)
    image_sigma = rng.uniform(0.6, 2.0) if rng.random() < 0.5 * config.blur_prob else 0.0
    image = finish(canvas.image, light, image_sigma, rng.uniform(1.0, 7.0), rng)
    rows = [
        _face_row(
            position,
            plan,
            box,
            landmarks,
            canvas.hidden_fraction(position),
            light.at(box[0] + box[2] // 2, box[1] + box[3] // 2),
            image_sigma,
        )
        for position, (plan, box, landmarks) in enumerate(painted)
    ]
    return RenderedImage(image=image, event=event, faces=rows)


def _face_row(
    position: int,
    plan: FacePlan,
    box: Box,
    landmarks: np.ndarray,
    hidden: float,
    light: tuple[float, float],
    image_sigma: float,
) -> dict[str, float]:
    """One ``faces`` row without ``image_id`` and the keep columns."""
    attributes = face_attributes(
        height=box[3],
        blur_sigma=combined_sigma(plan.blur_sigma, image_sigma),
        expression=plan.style.expression,
        shade=light[0],
        glare=light[1],
        hidden=hidden,
        rotation_deg=plan.rotation_deg,
        squash=plan.squash,
        yaw=plan.style.yaw,
    )
    row: dict[str, float] = {
        "face_index": position,
        "x": box[0],
        "y": box[1],
        "w": box[2],
        "h": box[3],
    }
    row.update(zip(LANDMARK_COLUMNS, landmarks.reshape(-1).tolist(), strict=True))
    row.update(attributes)
    return row
