"""Scenes around the faces: backgrounds, face-like distractors, occluders, placement, camera.

An image is composed back to front: a cluttered background (gradient, value-noise texture,
random shapes, window grids, lines), face-like distractors, then faces and their occluders as
RGBA layers (see ``generator.Canvas``), then the camera (global blur, lighting, sensor noise).
Pixel coordinates are continuous, pixel ``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from featherface.data.synthetic.face import HAIR_COLORS, SKIN_TONES, Color, random_color, shade

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
MASK_COLORS: tuple[Color, ...] = ((228, 236, 240), (130, 175, 215), (38, 38, 44))


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


@dataclass(frozen=True)
class Layer:
    """An RGBA image (straight alpha) whose top-left pixel lands on image pixel ``(x, y)``; it
    may stick out of the image."""

    image: Image.Image
    x: int
    y: int


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


def ellipse_points(
    centre: np.ndarray, radii: tuple[float, float], angle: float, count: int = 40
) -> np.ndarray:
    """float64 ``[count, 2]`` points of an ellipse with ``radii`` rotated by ``angle`` (rad)."""
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    local = np.stack([radii[0] * np.cos(t), radii[1] * np.sin(t)], axis=1)
    cos, sin = math.cos(angle), math.sin(angle)
    return centre + local @ np.array([[cos, sin], [-sin, cos]])


def draw_distractors(
    rng: np.random.Generator, image: Image.Image, count: int, heights: tuple[float, float]
) -> None:
    """Draw ``count`` face-like hard negatives on ``image`` in place.

    Each is a skin-coloured ellipse (width 0.7-0.9 of its height, log-uniform in ``heights``,
    tilted up to 30 degrees) with a lighter highlight, never with eyes, brows, nose or mouth;
    a third get a hair cap over most of the head (a head seen from behind), a third a neck.
    """
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(count):
        height = math.exp(rng.uniform(math.log(heights[0]), math.log(heights[1])))
        centre = rng.uniform(0, (image.width, image.height))
        radii = (0.5 * height * rng.uniform(0.7, 0.9), 0.5 * height)
        angle = math.radians(rng.uniform(-30, 30))
        skin = random_color(rng, SKIN_TONES, 8)
        kind = int(rng.integers(3))
        if kind == 2:
            below = centre + np.array([0.0, 0.6 * height])
            neck = ellipse_points(below, (0.3 * radii[0], 0.6 * radii[1]), angle)
            draw.polygon(_points(neck), fill=shade(skin, 0.8))
        draw.polygon(_points(ellipse_points(centre, radii, angle)), fill=skin)
        shine = centre - (0.2 * radii[0], 0.25 * radii[1])
        draw.polygon(
            _points(ellipse_points(shine, (0.4 * radii[0], 0.3 * radii[1]), angle)),
            fill=(*shade(skin, 1.08), 150),
        )
        if kind == 1:
            cap = ellipse_points(
                centre - (0, 0.15 * height), (radii[0] * 1.05, radii[1] * 0.9), angle
            )
            draw.polygon(_points(cap), fill=random_color(rng, HAIR_COLORS, 10))


def _points(polygon: np.ndarray) -> list[tuple[float, float]]:
    """``[N, 2]`` array as the list of ``(x, y)`` tuples ImageDraw takes."""
    return [(x, y) for x, y in polygon.tolist()]


def rasterize(polygon: np.ndarray, color: Color) -> Layer:
    """A layer holding ``polygon`` (float ``[N, 2]`` in image pixels) filled with ``color``,
    aliased like the background's shapes."""
    x0, y0 = (int(v) - 1 for v in np.floor(polygon.min(axis=0)))
    x1, y1 = (int(v) + 1 for v in np.ceil(polygon.max(axis=0)))
    canvas = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).polygon(_points(polygon - (x0 + 0.5, y0 + 0.5)), fill=color)
    return Layer(image=canvas, x=x0, y=y0)


def make_occluder(
    rng: np.random.Generator, box: Box, landmarks: np.ndarray, palette: tuple[Color, ...]
) -> Layer:
    """An object in front of the face with box ``box`` = (x, y, w, h).

    One of: a bar (pole, sign, arm) 0.15-0.6 face sizes thick and 2 long crossing the face at a
    random angle and offset; a blob (someone's head, a balloon) of radius 0.3-0.6 face sizes
    reaching ``depth`` ~ U(0.1, 1.1) face sizes into the face; a mask over nose, mouth and chin
    placed from the landmarks. The hidden fraction is measured afterwards by :class:`Canvas`.
    """
    size = float(max(box[2], box[3]))
    centre = np.array([box[0] + 0.5 * box[2], box[1] + 0.5 * box[3]])
    color = random_color(rng, palette, 40)
    kind = int(rng.choice(3, p=(0.4, 0.4, 0.2)))
    if kind == 2:
        return rasterize(_mask_polygon(landmarks), MASK_COLORS[rng.integers(len(MASK_COLORS))])
    angle = rng.uniform(0, np.pi)
    normal = np.array([math.cos(angle), math.sin(angle)])
    if kind == 0:
        thick = rng.uniform(0.15, 0.6) * size
        middle = centre + normal * rng.uniform(-0.5, 0.5) * size
        along = np.array([-normal[1], normal[0]]) * size
        across = normal * 0.5 * thick
        bar = np.stack(
            [
                middle - along - across,
                middle + along - across,
                middle + along + across,
                middle - along + across,
            ]
        )
        return rasterize(bar, color)
    radius = rng.uniform(0.3, 0.6) * size
    depth = rng.uniform(0.1, 1.1) * size
    blob_centre = centre + normal * (radius + 0.5 * size - depth)
    radii = (radius, radius * rng.uniform(0.8, 1.2))
    return rasterize(ellipse_points(blob_centre, radii, angle), color)


def _mask_polygon(landmarks: np.ndarray) -> np.ndarray:
    """A face mask in the face's own frame: ``x`` along the eye line (length ``d`` = eye
    distance), ``y`` perpendicular towards the mouth; it spans x in [-1.1 d, 1.1 d] and y from
    0.15 d above the nose tip to 1.45 d below it."""
    d = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 1.0)
    ex = (landmarks[1] - landmarks[0]) / d
    ey = np.array([-ex[1], ex[0]])
    frame = [(-1.1, -0.15), (1.1, -0.15), (1.0, 1.0), (0.5, 1.45), (-0.5, 1.45), (-1.0, 1.0)]
    return np.array([landmarks[2] + d * (u * ex + v * ey) for u, v in frame])


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


@dataclass(frozen=True)
class Lighting:
    """Full-size "L" maps of the scene light: the image is multiplied by ``shade / 255`` and
    then screened with ``glare / 255`` (``1 - (1 - x) (1 - g)``, pushing towards white);
    ``glare`` is None where no spot glares."""

    shade: Image.Image
    glare: Image.Image | None

    def at(self, x: int, y: int) -> tuple[float, float]:
        """``(shade, glare)`` in [0, 1] at pixel ``(x, y)``."""
        glare = 0.0 if self.glare is None else self.glare.getpixel((x, y)) / 255.0
        return self.shade.getpixel((x, y)) / 255.0, glare


def lighting(
    rng: np.random.Generator,
    width: int,
    height: int,
    spots: list[tuple[float, float, float, float]],
) -> Lighting:
    """The scene light, computed at a quarter of the size and upsampled bilinearly.

    ``shade = e * (1 - g * (1 + d) / 2) * prod_dark (1 - s * b)`` with exposure e ~ U(0.8, 1),
    g ~ U(0, 0.3), ``d`` in [-1, 1] the position along a random direction; ``glare =
    1 - prod_bright (1 - s * b)``. Each spot ``(cx, cy, radius, s)`` in full-size pixels has the
    bump ``b = exp(-r^2 / (2 radius^2))``; ``s < 0`` is a shadow of strength ``-s``, ``s > 0``
    a glare of strength ``s``.
    """
    small = (max(4, width // 4), max(4, height // 4))
    cols = (np.arange(small[0], dtype=np.float32) + 0.5) * (width / small[0])
    rows = (np.arange(small[1], dtype=np.float32) + 0.5) * (height / small[1])
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (rows[:, None] / height - 0.5) * math.sin(angle) + (
        cols[None, :] / width - 0.5
    ) * math.cos(angle)
    shade = rng.uniform(0.8, 1.0) * (1.0 - rng.uniform(0, 0.3) * (0.5 + ramp))
    clear = np.ones_like(shade)
    for cx, cy, radius, strength in spots:
        bump = np.exp(-((rows[:, None] - cy) ** 2 + (cols[None, :] - cx) ** 2) / (2 * radius**2))
        if strength < 0:
            shade *= 1.0 + strength * bump
        else:
            clear *= 1.0 - strength * bump
    glares = any(strength > 0 for *_, strength in spots)
    return Lighting(
        shade=_full_size(shade, (width, height)),
        glare=_full_size(1.0 - clear, (width, height)) if glares else None,
    )


def _full_size(values: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A [0, 1] float map as an "L" image resized bilinearly to ``size``."""
    image = Image.fromarray((np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8))
    return image.resize(size, Image.Resampling.BILINEAR)


def finish(
    image: Image.Image,
    light: Lighting,
    blur_sigma: float,
    noise_sigma: float,
    rng: np.random.Generator,
) -> Image.Image:
    """The camera: Gaussian-blur the whole image by ``blur_sigma`` px (0 = none), apply the
    ``light``, add grey uniform noise of standard deviation ``noise_sigma`` levels (rounded to
    integers, the same on all channels) clipped to 0..255."""
    if blur_sigma > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur_sigma))
    image = ImageChops.multiply(image, light.shade.convert("RGB"))
    if light.glare is not None:
        image = ImageChops.screen(image, light.glare.convert("RGB"))
    noise = rng.random((image.height, image.width), dtype=np.float32)
    noise *= noise_sigma * math.sqrt(12.0)
    noise += 128.5 - 0.5 * noise_sigma * math.sqrt(12.0)
    grain = Image.fromarray(noise.astype(np.uint8)).convert("RGB")
    return ImageChops.add(image, grain, scale=1.0, offset=-128)
