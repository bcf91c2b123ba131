"""What looks like a face or hides one: face-like distractors and occluders.

Distractors (hard negatives: skin-coloured heads without a face) are drawn straight on the
background; occluders (bars, blobs, masks) are RGBA layers pasted in front of a face on the
:class:`.canvas.Canvas`. Pixel coordinates are continuous, pixel ``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from featherface.data.synthetic.canvas import Box, Layer
from featherface.data.synthetic.colors import HAIR_COLORS, SKIN_TONES, Color, random_color, shade

MASK_COLORS: tuple[Color, ...] = ((228, 236, 240), (130, 175, 215), (38, 38, 44))


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
    placed from the landmarks. The hidden fraction is measured afterwards by
    :class:`.canvas.Canvas`.
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
