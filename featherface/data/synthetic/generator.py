"""Render whole synthetic images and write a split as JPEG files plus the canonical tables.

Every image draws its randomness from ``numpy.random.default_rng([seed, split_code, index])``
(``split_code`` 0 for train, 1 for val), so an image depends only on the config, its split and its
index, and the files and tables are the same for any number of worker processes.

One image: pick an event and a size, draw the background and distractors, plan the faces (size,
look, rotation, squash, blur, local light, occluder), place them largest first (smaller faces
shrink by 0.75 when no spot is found, and are dropped below ``min_face_height``), paint them
smallest first so near (large) faces are in front, each followed by its occluder, on a
:class:`Canvas` that measures how much of each face ends up hidden, then apply the camera and
save a JPEG. The attributes and keep lists come from :mod:`.difficulty`.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from featherface.data.schema import (
    FACE_COLUMNS,
    IMAGE_COLUMNS,
    KEEP_COLUMNS,
    LANDMARK_COLUMNS,
    conform_faces,
    conform_images,
)
from featherface.data.synthetic.difficulty import (
    assign_keep_lists,
    combined_sigma,
    face_attributes,
)
from featherface.data.synthetic.face import FaceStyle, head_half_extents, render_face, sample_style
from featherface.data.synthetic.scene import (
    EVENTS,
    Box,
    Event,
    Layer,
    draw_background,
    draw_distractors,
    find_spot,
    finish,
    lighting,
    make_occluder,
)
from featherface.params import SyntheticConfig

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1}
SPOT_PROB = 0.08
SHRINK = 0.75
CHUNKSIZE = 8
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class FacePlan:
    """One face before rendering. ``height`` is the box height in px, ``blur_sigma`` the face's
    own blur in px, ``light`` a local light on it (see :func:`lighting`; 0 = none),
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


@dataclass(frozen=True)
class RenderedImage:
    """A rendered image, its event and its face rows (table columns except ``image_id``)."""

    image: Image.Image
    event: Event
    faces: list[dict[str, float]]


class Canvas:
    """An RGB image being composed that records how much of each face later layers hide.

    For every face it keeps ``own``, the face layer's alpha inside its box, and ``cover``, the
    alpha of everything pasted later over the box, accumulated as
    ``cover = 1 - (1 - cover) * (1 - alpha)``. The hidden fraction of a face is
    ``sum(own * cover) / sum(own)``. Layers are pasted "over" with their alpha.
    """

    def __init__(self, background: Image.Image) -> None:
        self.image = background.convert("RGB")
        self._boxes: list[Rect] = []
        self._own: list[np.ndarray] = []
        self._cover: list[np.ndarray] = []

    def paste(self, layer: Layer) -> None:
        """Composite ``layer`` over the image and add its alpha to the cover of earlier faces."""
        self.image.paste(layer.image, (layer.x, layer.y), layer.image)
        extent = (layer.x, layer.y, layer.x + layer.image.width, layer.y + layer.image.height)
        alpha: np.ndarray | None = None
        for box, cover in zip(self._boxes, self._cover, strict=True):
            overlap = _intersection(box, extent)
            if overlap is None:
                continue
            if alpha is None:
                alpha = np.asarray(layer.image.getchannel("A"), dtype=np.float32) / 255.0
            above = alpha[
                overlap[1] - layer.y : overlap[3] - layer.y,
                overlap[0] - layer.x : overlap[2] - layer.x,
            ]
            part = cover[
                overlap[1] - box[1] : overlap[3] - box[1], overlap[0] - box[0] : overlap[2] - box[0]
            ]
            part[...] = 1.0 - (1.0 - part) * (1.0 - above)

    def add_face(self, layer: Layer, box: Box) -> None:
        """Paste a face layer and start tracking its box ``(x, y, w, h)`` (inside the image)."""
        self.paste(layer)
        x, y, w, h = box
        own = np.zeros((h, w), dtype=np.float32)
        inside = _intersection(
            (x, y, x + w, y + h),
            (layer.x, layer.y, layer.x + layer.image.width, layer.y + layer.image.height),
        )
        if inside is not None:
            alpha = (
                np.asarray(
                    layer.image.crop(
                        (
                            inside[0] - layer.x,
                            inside[1] - layer.y,
                            inside[2] - layer.x,
                            inside[3] - layer.y,
                        )
                    ).getchannel("A"),
                    dtype=np.float32,
                )
                / 255.0
            )
            own[inside[1] - y : inside[3] - y, inside[0] - x : inside[2] - x] = alpha
        self._boxes.append((x, y, x + w, y + h))
        self._own.append(own)
        self._cover.append(np.zeros((h, w), dtype=np.float32))

    def hidden_fraction(self, index: int) -> float:
        """The fraction of face ``index``'s own pixels covered by later layers, in [0, 1]."""
        own = self._own[index]
        return float((own * self._cover[index]).sum() / max(float(own.sum()), 1e-6))


def _intersection(a: Rect, b: Rect) -> Rect | None:
    """Intersection of two ``(x0, y0, x1, y1)`` integer rectangles, None when empty."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: ``default_rng([seed, split_code, index])``."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def _sample_plan(
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


def _face_count(rng: np.random.Generator, config: SyntheticConfig, event: Event) -> int:
    """``min + floor((max - min + 1) * u ** event.crowd_bias)``, at most ``max_faces``."""
    spread = config.max_faces - config.min_faces + 1
    count = config.min_faces + int(spread * rng.random() ** event.crowd_bias)
    return min(count, config.max_faces)


def _place(
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
    plans = [_sample_plan(rng, config, size) for _ in range(_face_count(rng, config, event))]
    canvas = Canvas(background)
    painted = _paint(rng, canvas, _place(rng, plans, size, config.min_face_height), event, size)
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


def image_name(event: Event, image_id: int) -> str:
    """``<event>/<number>_<Name>_synthetic_<image_id>.jpg``, e.g.
    ``3--Crowd/3_Crowd_synthetic_17.jpg``."""
    number, name = event.name.split("--")
    return f"{event.name}/{number}_{name}_synthetic_{image_id}.jpg"


def _write_image(task: tuple[SyntheticConfig, str, int, int, str]) -> tuple[dict, list[dict]]:
    """Render one image, write its JPEG atomically and return its ``images`` row and ``faces``
    rows (runs in a worker process)."""
    config, split, index, image_id, images_dir = task
    rendered = render_image(config, split, index)
    path = image_name(rendered.event, image_id)
    target = Path(images_dir) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    rendered.image.save(buffer, "JPEG", quality=config.jpeg_quality, subsampling=2)
    temporary = target.with_suffix(".jpg.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, target)
    image_row = {
        "image_id": image_id,
        "path": path,
        "event": rendered.event.name,
        "width": rendered.image.width,
        "height": rendered.image.height,
        "split": split,
    }
    return image_row, [{"image_id": image_id, **row} for row in rendered.faces]


def _results(
    tasks: list[tuple[SyntheticConfig, str, int, int, str]], workers: int
) -> Iterator[tuple[dict, list[dict]]]:
    """Rows of every task in task order, from a spawn-started pool when ``workers > 1``."""
    if workers == 1 or len(tasks) <= 1:
        yield from map(_write_image, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(_write_image, tasks, chunksize=CHUNKSIZE)


def generate_split(
    images_dir: Path,
    split: str,
    config: SyntheticConfig,
    first_image_id: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render ``config.num_<split>`` images as JPEG into ``images_dir/<event>/<name>.jpg``.

    Returns the canonical ``(images, faces)`` tables of :mod:`featherface.data.schema`, rows in
    image order; ``image_id = first_image_id + index``. Keep lists are filled for "val" by
    :func:`assign_keep_lists` and NA for "train". ``progress(n)`` is called in this process with
    the number of images finished so far. JPEGs use ``jpeg_quality``, 4:2:0 subsampling and no
    EXIF, and are written to a temporary name first. With ``workers > 1`` the images are
    rendered by a "spawn" process pool (safe in a process with threads), so a calling script
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    count = config.num_images(split)
    tasks = [
        (config, split, index, first_image_id + index, str(images_dir)) for index in range(count)
    ]
    image_rows: list[dict] = []
    face_rows: list[dict] = []
    for image_row, rows in _results(tasks, config.workers):
        image_rows.append(image_row)
        face_rows.extend(rows)
        if progress is not None:
            progress(len(image_rows))
    images = conform_images(pd.DataFrame(image_rows, columns=list(IMAGE_COLUMNS)))
    faces = pd.DataFrame(face_rows, columns=[c for c in FACE_COLUMNS if c not in KEEP_COLUMNS])
    for column in KEEP_COLUMNS:
        faces[column] = pd.array([pd.NA] * len(faces), dtype="boolean")
    if split == "val":
        faces = assign_keep_lists(faces)
    return images, conform_faces(faces)
