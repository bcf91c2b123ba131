"""Scene types and their backgrounds: WIDER-like events and the cluttered image behind the faces.

An image is composed back to front: a cluttered background (gradient, value-noise texture,
random shapes, window grids, lines; this module), face-like distractors (:mod:`.distractors`),
then faces and their occluders as RGBA layers (see :class:`.canvas.Canvas`), then the camera
(global blur, lighting, sensor noise; :mod:`.lighting`). Pixel coordinates are continuous, pixel
``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from featherface.data.synthetic.colors import Color, random_color


@dataclass(frozen=True)
class Event:
    """A WIDER-like scene type.

    ``top`` and ``bottom`` are the colours of the base gradient (sky or wall, ground or floor);
    ``palette`` colours the clutter; ``clutter`` is the (low, high) range of random shapes;
    ``windows`` is the probability of a grid of small rectangles (facades, shelves, blinds);
    ``crowd_bias`` is the exponent ``k`` of the face count
    ``min + floor((max - min + 1) * u ** k)``, ``u ~ U[0, 1)``: ``k < 1`` favours many faces.
    """

    name: str
    top: Color
    bottom: Color
    palette: tuple[Color, ...]
    clutter: tuple[int, int]
    windows: float
    crowd_bias: float


EVENTS: tuple[Event, ...] = (
    Event(
        "0--Street",
        (150, 180, 210),
        (85, 85, 90),
        (
            (120, 120, 125),
            (150, 70, 50),
            (200, 190, 170),
            (60, 60, 70),
            (220, 200, 60),
            (40, 90, 150),
        ),
        (20, 45),
        0.6,
        1.6,
    ),
    Event(
        "1--Office",
        (225, 220, 205),
        (150, 130, 110),
        (
            (245, 245, 240),
            (90, 90, 95),
            (160, 120, 80),
            (40, 60, 90),
            (200, 200, 210),
            (120, 150, 170),
        ),
        (12, 30),
        0.5,
        2.0,
    ),
    Event(
        "2--Park",
        (150, 200, 235),
        (70, 130, 60),
        (
            (40, 110, 40),
            (90, 160, 60),
            (100, 70, 40),
            (200, 190, 80),
            (220, 120, 150),
            (60, 140, 120),
        ),
        (20, 50),
        0.0,
        2.0,
    ),
    Event(
        "3--Crowd",
        (120, 120, 130),
        (60, 55, 60),
        (
            (200, 40, 40),
            (40, 60, 180),
            (230, 200, 40),
            (30, 30, 30),
            (240, 240, 240),
            (60, 150, 70),
            (160, 60, 160),
        ),
        (40, 90),
        0.1,
        0.45,
    ),
    Event(
        "4--Indoor",
        (200, 170, 130),
        (110, 75, 50),
        (
            (230, 210, 170),
            (140, 40, 40),
            (90, 60, 40),
            (200, 180, 150),
            (60, 70, 80),
            (180, 140, 60),
        ),
        (15, 35),
        0.3,
        1.8,
    ),
)


def draw_background(rng: np.random.Generator, event: Event, width: int, height: int) -> Image.Image:
    """A cluttered RGB background of ``width`` x ``height`` px for ``event``.

    A tilted two-colour gradient plus value noise, computed at a quarter of the size and
    upsampled bilinearly, then (with probability ``event.windows``) a window grid,
    ``event.clutter`` shapes and 3 to 24 lines, all alpha-blended.
    """
    small = (max(8, width // 4), max(8, height // 4))
    pixels = _gradient(rng, event, *small) + _value_noise(rng, *small)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image, "RGBA")
    if rng.random() < event.windows:
        _draw_windows(rng, draw, event.palette, width, height)
    _draw_shapes(rng, draw, event.palette, int(rng.integers(*event.clutter)), (width, height))
    for _ in range(int(rng.integers(3, 25))):
        start = rng.uniform(0, (width, height))
        end = start + rng.normal(0, 0.3 * max(width, height), 2)
        color = (*random_color(rng, event.palette, 40), int(rng.integers(120, 256)))
        draw.line([tuple(start), tuple(end)], fill=color, width=int(rng.integers(1, 6)))
    return image


def _gradient(rng: np.random.Generator, event: Event, width: int, height: int) -> np.ndarray:
    """float32 ``[H, W, 3]``: ``top`` above a horizon at 35-75% of the height, ``bottom`` below,
    blended over a soft band; the horizon tilts by up to 15 degrees."""
    top = (np.array(event.top) + rng.uniform(-25, 25, 3)).astype(np.float32)
    bottom = (np.array(event.bottom) + rng.uniform(-25, 25, 3)).astype(np.float32)
    horizon = rng.uniform(0.35, 0.75) * height
    slope = math.tan(math.radians(rng.uniform(-15, 15)))
    band = rng.uniform(0.02, 0.3) * height
    rows = (np.arange(height, dtype=np.float32) - horizon) / band + 0.5
    cols = (np.arange(width, dtype=np.float32) - 0.5 * width) * (-slope / band)
    mix = rows[:, None] + cols[None, :]
    np.clip(mix, 0.0, 1.0, out=mix)
    return top + mix[..., None] * (bottom - top)


def _value_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """float32 ``[H, W, 1]`` texture: a coarse (cells of ~1/6 of the image, ±18 levels) and a fine
    (~1/50, ±10 levels) random grid, each upsampled bicubically."""
    total = np.zeros((height, width), dtype=np.float32)
    for cells, amplitude in ((6, 18.0), (50, 10.0)):
        grid = rng.uniform(-amplitude, amplitude, (cells + 1, cells + 1)).astype(np.float32)
        smooth = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        total += np.asarray(smooth)
    return total[..., None]


def _draw_windows(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    palette: tuple[Color, ...],
    width: int,
    height: int,
) -> None:
    """A grid of 2-8 x 2-8 equal rectangles with gaps over a random part of the image."""
    x0, y0 = rng.uniform(0, 0.6) * width, rng.uniform(0, 0.6) * height
    x1, y1 = x0 + rng.uniform(0.2, 0.6) * width, y0 + rng.uniform(0.2, 0.6) * height
    cols, rows = (int(n) for n in rng.integers(2, 9, 2))
    cell_w, cell_h = (x1 - x0) / cols, (y1 - y0) / rows
    gap = rng.uniform(0.1, 0.35)
    color = (*random_color(rng, palette, 30), int(rng.integers(150, 256)))
    for row in range(rows):
        for col in range(cols):
            left, upper = x0 + col * cell_w, y0 + row * cell_h
            draw.rectangle(
                (left, upper, left + (1 - gap) * cell_w, upper + (1 - gap) * cell_h), fill=color
            )


def _draw_shapes(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    palette: tuple[Color, ...],
    count: int,
    size: tuple[int, int],
) -> None:
    """``count`` rectangles, ellipses or 3-7 sided polygons (kind uniform), half-sides
    log-uniform in 2-40% of the shorter image side times U(0.3, 1) per axis, opacity 140-255."""
    rows = rng.random((count, 6))
    scale = np.exp(np.log(0.02) + rows[:, 0] * np.log(20.0)) * min(size)
    for row, extent in zip(rows.tolist(), scale.tolist(), strict=True):
        cx, cy = row[1] * size[0], row[2] * size[1]
        sx, sy = extent * (0.3 + 0.7 * row[3]), extent * (0.3 + 0.7 * row[4])
        color = (*random_color(rng, palette, 40), int(140 + 115 * row[5]))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle((cx - sx, cy - sy, cx + sx, cy + sy), fill=color)
        elif kind == 1:
            draw.ellipse((cx - sx, cy - sy, cx + sx, cy + sy), fill=color)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            points = np.stack([cx + sx * np.cos(angles), cy + sy * np.sin(angles)], axis=1)
            draw.polygon([tuple(p) for p in points.tolist()], fill=color)
