"""Face rendering: one head drawn on a transparent patch, with its exact five landmarks.

Coordinates. Shapes are designed in the head-box units ``(u, v)`` of :mod:`.face`. Pixel
coordinates are continuous, pixel ``i`` covering ``[i, i + 1)`` (the convention of Pillow's resize
and affine transforms): a landmark at ``(x, y)`` lies in pixel ``(floor(x), floor(y))``.

Rendering. Every shape is mapped by the face's affine ``p = L @ (u, v) + t`` straight into the
patch (ellipses become polygons), with ``L = Rot(theta) @ diag(f * aspect * squash, f)``,
``Rot(theta) = [[cos, sin], [-sin, cos]]`` (positive ``theta`` turns the face counter-clockwise
on screen) and ``f`` px per head height; the patch is drawn ``k`` times larger
(:func:`supersampling`, so an 8 px face is drawn 64 px high and still shows eyes, mouth and
hair) and box-reduced by ``k``. Landmarks and the head outline go through the same ``L, t``, so
they are exact up to rasterisation. The shoulders fade out, then the patch is optionally blurred
and cropped to its visible pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from featherface.data.synthetic.colors import Color, clip_color, shade
from featherface.data.synthetic.face import FaceStyle, head_half_extents, landmarks_unit

CANVAS_U: tuple[float, float] = (-0.3, 1.3)
CANVAS_V: tuple[float, float] = (-0.45, 1.5)
FADE_V: tuple[float, float] = (1.3, 1.5)
BLUR_STEP = 2.0
OUTLINE = np.stack(
    [
        0.5 + 0.5 * np.cos(np.linspace(0, 2 * np.pi, 96, endpoint=False)),
        0.5 + 0.5 * np.sin(np.linspace(0, 2 * np.pi, 96, endpoint=False)),
    ],
    axis=1,
)


@dataclass(frozen=True)
class FacePatch:
    """A rendered face ready to paste.

    ``image``: the RGBA patch (straight, not premultiplied, alpha).
    ``landmarks``: float64 ``[5, 2]`` ``(x, y)`` in patch pixels, order left eye, right eye, nose
    tip, mouth left, mouth right. ``head``: float64 ``[4]`` ``(x0, y0, x1, y1)``, the extent of the
    transformed head ellipse in patch pixels.
    """

    image: Image.Image
    landmarks: np.ndarray
    head: np.ndarray


def supersampling(height: float) -> int:
    """Drawing scale ``k = clip(ceil(64 / h), 2, 8)`` for a face ``h`` px high."""
    return int(min(8, max(2, math.ceil(64.0 / height))))


class _Pen:
    """Draws head-box shapes straight into canvas pixels: ``p = matrix @ (u, v) + shift``.

    ``unit`` is canvas pixels per head height (for line widths). Pillow puts polygon vertices on
    pixel centres, hence the half-pixel shift; an ellipse becomes a polygon of about one vertex
    per 3 px of its perimeter (12 to 100 vertices).
    """

    def __init__(
        self, image: Image.Image, matrix: np.ndarray, shift: np.ndarray, unit: float
    ) -> None:
        self.draw = ImageDraw.Draw(image)
        self.matrix = matrix
        self.shift = shift - 0.5
        self.unit = unit

    def _map(self, points: np.ndarray) -> list[tuple[float, float]]:
        mapped = points @ self.matrix.T + self.shift
        return list(zip(mapped[:, 0].tolist(), mapped[:, 1].tolist(), strict=True))

    def width(self, width_v: float) -> int:
        return max(1, round(width_v * self.unit))

    def ellipse(
        self,
        u: float,
        v: float,
        ru: float,
        rv: float,
        fill: Color | None,
        outline: Color | None = None,
        width_v: float = 0.0,
    ) -> None:
        circle = _unit_circle(int(min(100, max(12, 2.1 * self.unit * max(ru, rv)))))
        points = self._map(circle * (ru, rv) + (u, v))
        if fill is not None:
            self.draw.polygon(points, fill=fill)
        if outline is not None:
            self.draw.line(
                points + points[:1], fill=outline, width=self.width(width_v), joint="curve"
            )

    def circle(self, u: float, v: float, radius_v: float, fill: Color, aspect: float) -> None:
        """A circle of ``radius_v`` head heights on the upright face (``aspect`` = box w / h)."""
        self.ellipse(u, v, radius_v / aspect, radius_v, fill)

    def polygon(self, points: list[tuple[float, float]], fill: Color) -> None:
        self.draw.polygon(self._map(np.array(points)), fill=fill)

    def line(self, points: list[tuple[float, float]], width_v: float, fill: Color) -> None:
        self.draw.line(
            self._map(np.array(points)), fill=fill, width=self.width(width_v), joint="curve"
        )


@functools.cache
def _unit_circle(count: int) -> np.ndarray:
    """float64 ``[count, 2]`` points ``(cos, sin)`` of ``count`` equal angle steps."""
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _draw_body(pen: _Pen, style: FaceStyle) -> None:
    """Shoulders, hair behind the head, neck and ears (everything behind the face oval)."""
    pen.ellipse(0.5, 1.72, 0.78, 0.45, style.clothes)
    if style.hair_style == "long":
        pen.ellipse(0.5, 0.32, 0.58, 0.62, style.hair)
        pen.polygon([(-0.08, 0.35), (1.08, 0.35), (1.12, 1.3), (-0.12, 1.3)], style.hair)
    elif style.hair_style in ("short", "fringe"):
        pen.ellipse(0.5, 0.2, 0.53, 0.42, style.hair)
    neck = shade(style.skin, 0.8)
    pen.polygon([(0.33, 0.75), (0.67, 0.75), (0.7, 1.35), (0.3, 1.35)], neck)
    pen.ellipse(0.5, 1.33, 0.2, 0.07, neck)
    ear = shade(style.skin, 0.92)
    for side in (0.065, 0.935):
        pen.ellipse(side, 0.48, 0.065, 0.1, ear)
        pen.ellipse(side, 0.48, 0.03, 0.055, shade(style.skin, 0.75))


def _draw_head(pen: _Pen, style: FaceStyle) -> None:
    """Face oval shaded by a light from ``style.light`` (head-box axes), beard, hair or hat."""
    towards = np.array([math.cos(style.light), math.sin(style.light)])
    for step, gain in ((0, 0.84), (1, 0.93), (2, 1.0)):
        u, v = (0.5, 0.45) + 0.025 * step * towards
        pen.ellipse(u, v, 0.41 - 0.035 * step, 0.55 - 0.03 * step, shade(style.skin, gain))
    if style.beard:
        top = math.asin((0.66 - 0.45) / 0.55)
        angles = np.linspace(top, math.pi - top, 24)
        jaw = [(0.5 + 0.41 * math.cos(a), 0.45 + 0.55 * math.sin(a)) for a in angles]
        pen.polygon(jaw, shade(style.hair, 0.9))
    edge = style.hairline
    if style.hair_style in ("short", "long"):
        pen.ellipse(0.5, edge - 0.2, 0.46, 0.22, style.hair)
        for side in (0.1, 0.9):
            pen.ellipse(side, 0.18, 0.05, 0.17, style.hair)
    elif style.hair_style == "fringe":
        teeth = [(0.1 + 0.8 * i / 8, edge + (0.12 if i % 2 else 0.06)) for i in range(9)]
        pen.polygon(
            [(0.06, 0.3), (0.06, -0.1), (0.5, -0.3), (0.94, -0.1), (0.94, 0.3), *teeth[::-1]],
            style.hair,
        )
    elif style.hair_style == "hat":
        pen.polygon(
            [(0.1, edge + 0.02), (0.16, -0.4), (0.84, -0.4), (0.9, edge + 0.02)], style.clothes
        )
        pen.ellipse(0.5, edge + 0.02, 0.62, 0.07, shade(style.clothes, 0.7))
    if style.hair_style == "long":
        for u in (0.1, 0.9):
            pen.polygon(
                [(u - 0.06, 0.1), (u + 0.05, 0.1), (u + 0.03, 0.85), (u - 0.1, 0.9)], style.hair
            )


def _draw_eyes(pen: _Pen, style: FaceStyle) -> None:
    """Eye whites, irises, pupils, lids and brows; the iris centre is the landmark."""
    left, right = landmarks_unit(style)[:2]
    brow_lift = 0.03 if style.mouth == "open" else 0.0
    for (u, v), sign in ((left, -1.0), (right, 1.0)):
        width = 0.075 * (1 - 0.4 * max(0.0, sign * style.yaw))
        height = 0.032 * style.eye_open
        pen.ellipse(u, v, width, height, (238, 236, 228))
        pen.circle(u, v, min(0.032, height * 1.05), style.iris, style.aspect)
        pen.circle(u, v, min(0.015, height * 0.5), (12, 10, 10), style.aspect)
        pen.circle(u + 0.014, v - 0.012, 0.006, (250, 250, 250), style.aspect)
        lid = [(u - width, v + 0.004), (u, v - height - 0.004), (u + width, v + 0.004)]
        pen.line(lid, 0.01, shade(style.skin, 0.35))
        brow_v = v - 0.085 - brow_lift
        brow = [
            (u - 1.2 * width, brow_v + 0.015),
            (u, brow_v - 0.01),
            (u + 1.2 * width, brow_v + 0.01),
        ]
        pen.line(brow, 0.022, shade(style.hair, 0.7))


def _draw_nose_mouth(pen: _Pen, style: FaceStyle) -> None:
    """Nose (bridge shadow, wings, nostrils) and mouth (closed, smiling or open)."""
    nose_u, nose_v = landmarks_unit(style)[2]
    (left_u, corner_v), (right_u, _) = landmarks_unit(style)[3:]
    shadow = shade(style.skin, 0.78)
    pen.line([(nose_u - 0.03, style.eye_v + 0.04), (nose_u - 0.045, nose_v - 0.02)], 0.012, shadow)
    pen.ellipse(nose_u, nose_v - 0.005, 0.06, 0.04, shade(style.skin, 0.88))
    pen.ellipse(nose_u, nose_v - 0.012, 0.025, 0.02, shade(style.skin, 1.06))
    for side in (-1, 1):
        pen.ellipse(nose_u + side * 0.028, nose_v + 0.015, 0.014, 0.008, shade(style.skin, 0.4))
    lips = clip_color(np.array(style.skin) * (0.78, 0.5, 0.52) + (40, 10, 10))
    mid = 0.5 * (left_u + right_u)
    if style.mouth == "open":
        pen.ellipse(mid, corner_v, right_u - mid, 0.085, lips)
        pen.ellipse(mid, corner_v + 0.005, 0.8 * (right_u - mid), 0.065, (45, 15, 18))
        pen.polygon(
            [
                (mid - 0.06, corner_v - 0.05),
                (mid + 0.06, corner_v - 0.05),
                (mid + 0.055, corner_v - 0.025),
                (mid - 0.055, corner_v - 0.025),
            ],
            (235, 230, 220),
        )
        return
    dip = 0.02 if style.mouth == "smile" else 0.0
    upper = [
        (left_u, corner_v),
        (mid - 0.04, corner_v - 0.02 + dip),
        (mid, corner_v - 0.012 + dip),
        (mid + 0.04, corner_v - 0.02 + dip),
        (right_u, corner_v),
    ]
    lower = [
        (right_u, corner_v),
        (mid + 0.05, corner_v + 0.03 + dip),
        (mid - 0.05, corner_v + 0.03 + dip),
        (left_u, corner_v),
    ]
    pen.polygon(upper + lower, lips)
    pen.line(
        [(left_u, corner_v), (mid, corner_v + 0.006 + dip), (right_u, corner_v)],
        0.01,
        shade(lips, 0.45),
    )


def _draw_glasses(pen: _Pen, style: FaceStyle) -> None:
    """Frames around both eyes, a bridge and temples to the ears; dark lenses for sunglasses."""
    left, right = landmarks_unit(style)[:2]
    frame = (25, 22, 20) if style.glasses == "sun" else shade(style.clothes, 0.5)
    lens = (22, 24, 30) if style.glasses == "sun" else None
    for u, v in (left, right):
        pen.ellipse(u, v, 0.11, 0.065, lens, outline=frame, width_v=0.014)
    bridge_v = left[1] - 0.015
    pen.line([(left[0] + 0.11, bridge_v), (right[0] - 0.11, bridge_v)], 0.014, frame)
    pen.line([(left[0] - 0.11, bridge_v), (0.05, bridge_v + 0.02)], 0.014, frame)
    pen.line([(right[0] + 0.11, bridge_v), (0.95, bridge_v + 0.02)], 0.014, frame)


def render_face(
    style: FaceStyle, height: float, rotation_deg: float, squash: float, blur_sigma: float
) -> FacePatch:
    """Render ``style`` so that its transformed head box is ``height`` px high.

    ``squash`` (<= 1) scales the face's width before the rotation by ``rotation_deg``; the scale
    ``f = height / (2 * half_height)`` with ``half_height`` from :func:`.face.head_half_extents`.
    ``blur_sigma`` (px, 0 = none) blurs the whole patch.
    """
    theta = math.radians(rotation_deg)
    scale = 0.5 * height / head_half_extents(style.aspect, squash, theta)[1]
    cos, sin = math.cos(theta), math.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]]) @ np.diag([scale * style.aspect * squash, scale])
    corners = np.array([(u, v) for u in CANVAS_U for v in CANVAS_V]) @ linear.T
    shift = 1.0 - corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) + shift + 1.0).astype(int)
    k = supersampling(height)
    canvas = Image.new("RGBa", (int(size[0]) * k, int(size[1]) * k), (0, 0, 0, 0))
    pen = _Pen(canvas, k * linear, k * shift, k * scale)
    for part in (_draw_body, _draw_head, _draw_eyes, _draw_nose_mouth):
        part(pen, style)
    if style.glasses:
        _draw_glasses(pen, style)
    image = canvas.reduce(k).convert("RGBA")
    _fade_shoulders(image, np.linalg.inv(linear)[1], shift)
    if blur_sigma > 0:
        image, pad = _blur(image.convert("RGBa"), blur_sigma)
        image = image.convert("RGBA")
        shift = shift + pad
    bounds = image.getbbox(alpha_only=True) or (0, 0, 1, 1)
    offset = shift - bounds[:2]
    outline = OUTLINE @ linear.T + offset
    return FacePatch(
        image=image.crop(bounds),
        landmarks=landmarks_unit(style) @ linear.T + offset,
        head=np.concatenate([outline.min(axis=0), outline.max(axis=0)]),
    )


def _fade_shoulders(image: Image.Image, v_row: np.ndarray, shift: np.ndarray) -> None:
    """Multiply the alpha by ``clip((FADE_V[1] - v) / (FADE_V[1] - FADE_V[0]), 0, 1)`` in place,
    ``v = v_row @ (p - shift)`` the head-box ``v`` of pixel centre ``p``, so neck and shoulders
    fade out instead of ending at the canvas edge. The ramp is computed on a grid 4 times
    coarser and upsampled bilinearly (exact where it is linear)."""
    small = (image.width // 4 + 2, image.height // 4 + 2)
    xs = (np.arange(small[0], dtype=np.float32) + 0.5) * (image.width / small[0]) - shift[0]
    ys = (np.arange(small[1], dtype=np.float32) + 0.5) * (image.height / small[1]) - shift[1]
    v = v_row[0] * xs[None, :] + v_row[1] * ys[:, None]
    ramp = np.clip((FADE_V[1] - v) / (FADE_V[1] - FADE_V[0]), 0.0, 1.0)
    mask = Image.fromarray((ramp * 255).round().astype(np.uint8))
    mask = mask.resize(image.size, Image.Resampling.BILINEAR)
    image.putalpha(ImageChops.multiply(image.getchannel("A"), mask))


def _blur(image: Image.Image, sigma: float) -> tuple[Image.Image, int]:
    """Gaussian blur of ``sigma`` px on a canvas grown by ``pad = ceil(3 sigma) + 1`` px a side
    (to a multiple of ``m = max(1, int(sigma / BLUR_STEP))``); returns it and ``pad``.

    For ``m > 1`` the blur of ``sigma / m`` runs on the canvas box-reduced by ``m`` and is
    upsampled back, which keeps the pixel grid aligned (``x_small = x / m``) at a fraction of
    the cost.
    """
    pad = math.ceil(3 * sigma) + 1
    factor = max(1, int(sigma / BLUR_STEP))
    size = tuple(math.ceil((side + 2 * pad) / factor) * factor for side in image.size)
    canvas = Image.new(image.mode, size, (0, 0, 0, 0))
    canvas.paste(image, (pad, pad))
    if factor == 1:
        return canvas.filter(ImageFilter.GaussianBlur(sigma)), pad
    small = canvas.reduce(factor).filter(ImageFilter.GaussianBlur(sigma / factor))
    return small.resize(canvas.size, Image.Resampling.BILINEAR), pad
