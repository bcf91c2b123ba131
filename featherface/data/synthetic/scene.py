"""Scenes around the faces: backgrounds, face-like distractors, occluders, placement, camera.

An image is composed back to front: a cluttered background (gradient, value-noise texture,
random shapes, window grids, lines), face-like distractors, then faces and their occluders as
premultiplied layers on a float canvas that records how much of every face later layers hide,
then the camera (lighting field, global blur, sensor noise). Pixel coordinates are continuous,
pixel ``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from featherface.data.synthetic.face import SKIN_TONES, HAIR_COLORS, Color, random_color

Box = tuple[int, int, int, int]
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
    Event("0--Street", (150, 180, 210), (85, 85, 90),
          ((120, 120, 125), (150, 70, 50), (200, 190, 170), (60, 60, 70), (220, 200, 60),
           (40, 90, 150)), (20, 45), 0.6, 1.6),
    Event("1--Office", (225, 220, 205), (150, 130, 110),
          ((245, 245, 240), (90, 90, 95), (160, 120, 80), (40, 60, 90), (200, 200, 210),
           (120, 150, 170)), (12, 30), 0.5, 2.0),
    Event("2--Park", (150, 200, 235), (70, 130, 60),
          ((40, 110, 40), (90, 160, 60), (100, 70, 40), (200, 190, 80), (220, 120, 150),
           (60, 140, 120)), (20, 50), 0.0, 2.0),
    Event("3--Crowd", (120, 120, 130), (60, 55, 60),
          ((200, 40, 40), (40, 60, 180), (230, 200, 40), (30, 30, 30), (240, 240, 240),
           (60, 150, 70), (160, 60, 160)), (40, 90), 0.1, 0.45),
    Event("4--Indoor", (200, 170, 130), (110, 75, 50),
          ((230, 210, 170), (140, 40, 40), (90, 60, 40), (200, 180, 150), (60, 70, 80),
           (180, 140, 60)), (15, 35), 0.3, 1.8),
)


@dataclass(frozen=True)
class Layer:
    """An RGBA image (straight alpha) whose top-left pixel lands on image pixel ``(x, y)``; it
    may stick out of the image."""

    image: Image.Image
    x: int
    y: int


def draw_background(rng: np.random.Generator, event: Event, width: int,
                    height: int) -> Image.Image:
    """A cluttered RGB background of ``width`` x ``height`` px for ``event``.

    A tilted two-colour gradient plus value noise, computed at a quarter of the size and
    upsampled bicubically, then (with probability ``event.windows``) a window grid,
    ``event.clutter`` shapes and 3 to 24 lines, all alpha-blended.
    """
    small = (max(8, width // 4), max(8, height // 4))
    pixels = _gradient(rng, event, *small) + _value_noise(rng, *small)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image, "RGBA")
    if rng.random() < event.windows:
        _draw_windows(rng, draw, event.palette, width, height)
    for _ in range(int(rng.integers(*event.clutter))):
        _draw_shape(rng, draw, event.palette, width, height)
    for _ in range(int(rng.integers(3, 25))):
        start = rng.uniform(0, (width, height))
        end = start + rng.normal(0, 0.3 * max(width, height), 2)
        color = random_color(rng, event.palette, 40) + (int(rng.integers(120, 256)),)
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


def _draw_windows(rng: np.random.Generator, draw: ImageDraw.ImageDraw,
                  palette: tuple[Color, ...], width: int, height: int) -> None:
    """A grid of 2-8 x 2-8 equal rectangles with gaps over a random part of the image."""
    x0, y0 = rng.uniform(0, 0.6) * width, rng.uniform(0, 0.6) * height
    x1, y1 = x0 + rng.uniform(0.2, 0.6) * width, y0 + rng.uniform(0.2, 0.6) * height
    cols, rows = (int(n) for n in rng.integers(2, 9, 2))
    cell_w, cell_h = (x1 - x0) / cols, (y1 - y0) / rows
    gap = rng.uniform(0.1, 0.35)
    color = random_color(rng, palette, 30) + (int(rng.integers(150, 256)),)
    for row in range(rows):
        for col in range(cols):
            left, upper = x0 + col * cell_w, y0 + row * cell_h
            draw.rectangle((left, upper, left + (1 - gap) * cell_w, upper + (1 - gap) * cell_h),
                           fill=color)


def _draw_shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw,
                palette: tuple[Color, ...], width: int, height: int) -> None:
    """One rectangle, ellipse or 3-7 sided polygon, side log-uniform in 2-40% of the image."""
    size = math.exp(rng.uniform(math.log(0.02), math.log(0.4))) * min(width, height)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    sx, sy = size * rng.uniform(0.3, 1.0, 2)
    color = random_color(rng, palette, 40) + (int(rng.integers(140, 256)),)
    kind = int(rng.integers(3))
    if kind == 0:
        draw.rectangle((cx - sx, cy - sy, cx + sx, cy + sy), fill=color)
    elif kind == 1:
        draw.ellipse((cx - sx, cy - sy, cx + sx, cy + sy), fill=color)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        points = np.stack([cx + sx * np.cos(angles), cy + sy * np.sin(angles)], axis=1)
        draw.polygon([tuple(p) for p in points], fill=color)


def ellipse_points(centre: np.ndarray, radii: tuple[float, float], angle: float,
                   count: int = 40) -> np.ndarray:
    """float64 ``[count, 2]`` points of an ellipse with ``radii`` rotated by ``angle`` (rad)."""
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    local = np.stack([radii[0] * np.cos(t), radii[1] * np.sin(t)], axis=1)
    cos, sin = math.cos(angle), math.sin(angle)
    return centre + local @ np.array([[cos, sin], [-sin, cos]])


def draw_distractors(rng: np.random.Generator, image: Image.Image, count: int,
                     heights: tuple[float, float]) -> None:
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
            neck = ellipse_points(centre + (0, 0.6 * height), (0.3 * radii[0], 0.6 * radii[1]), angle)
            draw.polygon([tuple(p) for p in neck], fill=_scale(skin, 0.8))
        draw.polygon([tuple(p) for p in ellipse_points(centre, radii, angle)], fill=skin)
        shine = centre - (0.2 * radii[0], 0.25 * radii[1])
        draw.polygon([tuple(p) for p in ellipse_points(shine, (0.4 * radii[0], 0.3 * radii[1]),
                                                       angle)], fill=_scale(skin, 1.08) + (150,))
        if kind == 1:
            cap = ellipse_points(centre - (0, 0.15 * height), (radii[0] * 1.05, radii[1] * 0.9),
                                 angle)
            draw.polygon([tuple(p) for p in cap], fill=random_color(rng, HAIR_COLORS, 10))


def _scale(color: Color, gain: float) -> Color:
    r, g, b = (int(min(255.0, c * gain)) for c in color)
    return r, g, b


def rasterize(shapes: list[tuple[np.ndarray, Color]]) -> Layer:
    """A layer holding ``shapes`` (polygons float ``[N, 2]`` in image pixels, drawn in order),
    drawn at 2x and box-downsampled so edges are antialiased."""
    points = np.concatenate([polygon for polygon, _ in shapes])
    x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    canvas = Image.new("RGBA", (2 * (x1 - x0), 2 * (y1 - y0)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for polygon, color in shapes:
        draw.polygon([tuple(2 * (p - (x0, y0)) - 0.5) for p in polygon], fill=color)
    small = canvas.convert("RGBa").resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
    return Layer(image=small.convert("RGBA"), x=int(x0), y=int(y0))


def make_occluder(rng: np.random.Generator, box: Box, landmarks: np.ndarray,
                  palette: tuple[Color, ...]) -> Layer:
    """An object in front of the face with box ``box`` = (x, y, w, h).

    One of: a bar (pole, sign, arm) 0.15-0.7 face sizes thick crossing the face at a random
    angle and offset; a blob (someone's head, a balloon) of radius 0.4-1.1 face sizes reaching
    ``depth`` ~ U(0.1, 1.15) face sizes into the face; a mask over nose, mouth and chin placed
    from the landmarks. The hidden fraction is measured afterwards by :class:`Canvas`.
    """
    size = float(max(box[2], box[3]))
    centre = np.array([box[0] + 0.5 * box[2], box[1] + 0.5 * box[3]])
    color = random_color(rng, palette, 40)
    kind = int(rng.choice(3, p=(0.4, 0.4, 0.2)))
    if kind == 2:
        return rasterize([(_mask_polygon(landmarks), MASK_COLORS[rng.integers(len(MASK_COLORS))])])
    angle = rng.uniform(0, np.pi)
    normal = np.array([math.cos(angle), math.sin(angle)])
    if kind == 0:
        thick = rng.uniform(0.15, 0.7) * size
        middle = centre + normal * rng.uniform(-0.5, 0.5) * size
        along = np.array([-normal[1], normal[0]]) * size
        across = normal * 0.5 * thick
        bar = np.stack([middle - along - across, middle + along - across,
                        middle + along + across, middle - along + across])
        return rasterize([(bar, color)])
    radius = rng.uniform(0.4, 1.1) * size
    depth = rng.uniform(0.1, 1.15) * size
    blob_centre = centre + normal * (radius + 0.5 * size - depth)
    return rasterize([(ellipse_points(blob_centre, (radius, radius * rng.uniform(0.8, 1.2)),
                                      angle), color)])


def _mask_polygon(landmarks: np.ndarray) -> np.ndarray:
    """A face mask in the face's own frame: ``x`` along the eye line (length ``d`` = eye
    distance), ``y`` perpendicular towards the mouth; it spans x in [-1.1 d, 1.1 d] and y from
    0.15 d above the nose tip to 1.45 d below it."""
    d = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 1.0)
    ex = (landmarks[1] - landmarks[0]) / d
    ey = np.array([-ex[1], ex[0]])
    frame = [(-1.1, -0.15), (1.1, -0.15), (1.0, 1.0), (0.5, 1.45), (-0.5, 1.45), (-1.0, 1.0)]
    return np.array([landmarks[2] + d * (u * ex + v * ey) for u, v in frame])


class Canvas:
    """An RGB image being composed that records how much of each face later layers hide.

    For every face it keeps ``own``, the face layer's alpha inside its box, and ``cover``, the
    alpha of everything pasted later over the box, accumulated as
    ``cover = 1 - (1 - cover) * (1 - alpha)``. The hidden fraction of a face is
    ``sum(own * cover) / sum(own)``. Layers are pasted "over" with their alpha.
    """

    def __init__(self, background: Image.Image) -> None:
        self.image = background.convert("RGB")
        self._boxes: list[Box] = []
        self._own: list[np.ndarray] = []
        self._cover: list[np.ndarray] = []

    def paste(self, layer: Layer) -> None:
        """Composite ``layer`` over the image and add its alpha to the cover of earlier faces."""
        self.image.paste(layer.image, (layer.x, layer.y), layer.image)
        extent = (layer.x, layer.y, layer.x + layer.image.width, layer.y + layer.image.height)
        alpha: np.ndarray | None = None
        for box, cover in zip(self._boxes, self._cover):
            overlap = _intersection(box, extent)
            if overlap is None:
                continue
            if alpha is None:
                alpha = np.asarray(layer.image.getchannel("A"), dtype=np.float32) / 255.0
            above = alpha[overlap[1] - layer.y:overlap[3] - layer.y,
                          overlap[0] - layer.x:overlap[2] - layer.x]
            part = cover[overlap[1] - box[1]:overlap[3] - box[1],
                         overlap[0] - box[0]:overlap[2] - box[0]]
            part[...] = 1.0 - (1.0 - part) * (1.0 - above)

    def add_face(self, layer: Layer, box: Box) -> None:
        """Paste a face layer and start tracking its box ``(x, y, w, h)`` (inside the image)."""
        self.paste(layer)
        x, y, w, h = box
        own = np.zeros((h, w), dtype=np.float32)
        inside = _intersection((x, y, x + w, y + h), (layer.x, layer.y, layer.x + layer.image.width,
                                                      layer.y + layer.image.height))
        if inside is not None:
            alpha = np.asarray(layer.image.crop((inside[0] - layer.x, inside[1] - layer.y,
                                                 inside[2] - layer.x, inside[3] - layer.y))
                               .getchannel("A"), dtype=np.float32) / 255.0
            own[inside[1] - y:inside[3] - y, inside[0] - x:inside[2] - x] = alpha
        self._boxes.append((x, y, x + w, y + h))
        self._own.append(own)
        self._cover.append(np.zeros((h, w), dtype=np.float32))

    def hidden_fraction(self, index: int) -> float:
        """The fraction of face ``index``'s own pixels covered by later layers, in [0, 1]."""
        own = self._own[index]
        return float((own * self._cover[index]).sum() / max(float(own.sum()), 1e-6))


def _intersection(a: Box, b: Box) -> Box | None:
    """Intersection of two ``(x0, y0, x1, y1)`` integer rectangles, None when empty."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def find_spot(rng: np.random.Generator, size: tuple[float, float], image_size: tuple[int, int],
              placed: list[tuple[float, float, float, float]], tries: int = 30) -> tuple[float, float] | None:
    """Top-left corner for a ``size = (w, h)`` box inside the image, or None after ``tries``.

    A spot is accepted when, against every box already placed, IoU <= 0.3 and the intersection
    covers at most half of the smaller box (so no face is buried under another).
    """
    width, height = size
    if width > image_size[0] - 2 or height > image_size[1] - 2:
        return None
    others = np.array(placed, dtype=np.float64).reshape(-1, 4)
    for _ in range(tries):
        x = rng.uniform(1, image_size[0] - 1 - width)
        y = rng.uniform(1, image_size[1] - 1 - height)
        inter_w = np.clip(np.minimum(x + width, others[:, 0] + others[:, 2])
                          - np.maximum(x, others[:, 0]), 0, None)
        inter_h = np.clip(np.minimum(y + height, others[:, 1] + others[:, 3])
                          - np.maximum(y, others[:, 1]), 0, None)
        inter = inter_w * inter_h
        areas = others[:, 2] * others[:, 3]
        iou = inter / (width * height + areas - inter)
        smaller = inter / np.minimum(width * height, areas)
        if not len(others) or (iou.max() <= 0.3 and smaller.max() <= 0.5):
            return float(x), float(y)
    return None


def lighting_field(rng: np.random.Generator, width: int, height: int,
                   spots: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Per-pixel gain, float32 ``[H, W]``, computed at a quarter of the size and upsampled.

    ``exposure * (1 + g * d) * prod_spots (1 + (gain - 1) * exp(-r^2 / (2 radius^2)))`` with
    exposure ~ U(0.85, 1.15), g ~ U(0, 0.25), ``d`` in [-1, 1] the position along a random
    direction, and each spot ``(cx, cy, radius, gain)`` (full-size pixels) a local shadow or
    highlight.
    """
    small = (max(4, width // 4), max(4, height // 4))
    cols = (np.arange(small[0], dtype=np.float32) + 0.5) * (width / small[0])
    rows = (np.arange(small[1], dtype=np.float32) + 0.5) * (height / small[1])
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (rows[:, None] / height - 0.5) * math.sin(angle) + (cols[None, :] / width - 0.5) * math.cos(angle)
    field = rng.uniform(0.85, 1.15) * (1.0 + rng.uniform(0, 0.25) * 2.0 * ramp)
    for cx, cy, radius, gain in spots:
        bump = np.exp(-((rows[:, None] - cy) ** 2 + (cols[None, :] - cx) ** 2) / (2 * radius**2))
        field *= 1.0 + (gain - 1.0) * bump
    image = Image.fromarray(field.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image)


def finish(image: Image.Image, field: np.ndarray, blur_sigma: float, noise_sigma: float,
           rng: np.random.Generator) -> Image.Image:
    """The camera: Gaussian-blur the whole image by ``blur_sigma`` px (0 = none), multiply by the
    lighting ``field``, add grey Gaussian noise of ``noise_sigma`` levels, quantise."""
    if blur_sigma > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur_sigma))
    noise = rng.standard_normal((image.height, image.width, 1), dtype=np.float32)
    noise *= noise_sigma
    noise += 0.5
    lit = np.asarray(image, dtype=np.float32) * field[..., None]
    lit += noise
    np.clip(lit, 0, 255, out=lit)
    return Image.fromarray(lit.astype(np.uint8))
