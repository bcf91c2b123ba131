"""Procedural faces: one head drawn on a transparent patch, with its exact five landmarks.

Coordinates. A face is designed in head-box units ``(u, v)``: ``u`` runs from the left ear (0) to
the right ear (1) and ``v`` from the hair line (0) to the chin (1). The head outline is the ellipse
inscribed in that unit square, so the upright face's WIDER-style box is the unit square. Pixel
coordinates are continuous, pixel ``i`` covering ``[i, i + 1)`` (the convention of Pillow's resize
and affine transforms): a landmark at ``(x, y)`` lies in pixel ``(floor(x), floor(y))``.

Rendering. The upright face is drawn at ``R`` px head height (:func:`render_height`; an 8 px
face is drawn at 64 px, so it still shows eyes, mouth and hair). A drawing more than 1.3 times
the final size is first resized with an antialiasing filter (scale and horizontal squash); then
an affine transform rotates (and, for a near-final-size drawing, scales) it; the patch is
optionally blurred and cropped to its visible pixels. Landmarks and the head outline go through
the same maps, so they are exact up to rasterisation:
``p = Rot(theta) @ diag(s_x, s_y) @ p_hires + t`` with ``Rot(theta) = [[cos, sin], [-sin, cos]]``
(positive ``theta`` turns the face counter-clockwise on screen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Color = tuple[int, int, int]

SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 200), (240, 192, 150), (222, 170, 124), (196, 134, 92),
    (160, 104, 66), (114, 72, 46), (78, 50, 34),
)
HAIR_COLORS: tuple[Color, ...] = (
    (18, 15, 14), (40, 28, 20), (80, 52, 32), (130, 88, 52),
    (198, 160, 100), (160, 72, 36), (145, 142, 138), (226, 222, 212),
)
IRIS_COLORS: tuple[Color, ...] = ((55, 36, 22), (92, 62, 34), (58, 96, 136), (68, 104, 66))
HAIR_STYLES: tuple[str, ...] = ("short", "short", "fringe", "long", "long", "bald", "hat")
MOUTHS: tuple[str, ...] = ("closed", "smile", "open")

CANVAS_U: tuple[float, float] = (-0.3, 1.3)
CANVAS_V: tuple[float, float] = (-0.45, 1.5)
FADE_V: tuple[float, float] = (1.3, 1.5)
YAW_SHIFT = 0.1
BLUR_STEP = 2.0
OUTLINE = np.stack([0.5 + 0.5 * np.cos(np.linspace(0, 2 * np.pi, 96, endpoint=False)),
                    0.5 + 0.5 * np.sin(np.linspace(0, 2 * np.pi, 96, endpoint=False))], axis=1)


@dataclass(frozen=True)
class FaceStyle:
    """The look of one face; lengths are in head-box units (see the module docstring).

    ``yaw`` in ``[-1, 1]`` shifts eyes, nose and mouth by ``YAW_SHIFT * yaw`` towards image-right
    (nose tip 1.6 times as far) and narrows the eye on that side, imitating a turned head.
    ``light`` is the direction (radians, image axes) the light comes from.
    """

    aspect: float
    skin: Color
    hair: Color
    hair_style: str
    hairline: float
    iris: Color
    clothes: Color
    eye_v: float
    eye_dx: float
    eye_open: float
    nose_v: float
    mouth_v: float
    mouth_dx: float
    mouth: str
    yaw: float
    glasses: str
    beard: bool
    light: float

    @property
    def expression(self) -> int:
        """WIDER expression code: 1 (exaggerated) for a wide-open mouth, else 0."""
        return int(self.mouth == "open")


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


def random_color(rng: np.random.Generator, palette: tuple[Color, ...], jitter: float) -> Color:
    """A palette colour blended with its neighbour and jittered by ``±jitter`` per channel."""
    position = rng.uniform(0, len(palette) - 1)
    low = int(position)
    high = min(low + 1, len(palette) - 1)
    mix = (1 - (position - low)) * np.array(palette[low]) + (position - low) * np.array(palette[high])
    return _clip_color(mix + rng.uniform(-jitter, jitter, 3))


def sample_style(rng: np.random.Generator, glasses_prob: float) -> FaceStyle:
    """Draw a random :class:`FaceStyle`; 15% of faces have a wide-open mouth (expression 1)."""
    mouth = MOUTHS[rng.choice(3, p=(0.5, 0.35, 0.15))]
    glasses = ("clear" if rng.random() < 0.75 else "sun") if rng.random() < glasses_prob else ""
    return FaceStyle(
        aspect=float(rng.uniform(0.74, 0.88)),
        skin=random_color(rng, SKIN_TONES, 8),
        hair=random_color(rng, HAIR_COLORS, 10),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hairline=float(rng.uniform(0.0, 0.1)),
        iris=IRIS_COLORS[rng.integers(len(IRIS_COLORS))],
        clothes=_clip_color(rng.uniform(20, 235, 3)),
        eye_v=float(rng.uniform(0.40, 0.45)),
        eye_dx=float(rng.uniform(0.16, 0.2)),
        eye_open=float(rng.uniform(0.75, 1.15)),
        nose_v=float(rng.uniform(0.6, 0.65)),
        mouth_v=float(rng.uniform(0.76, 0.8)),
        mouth_dx=float(rng.uniform(0.1, 0.14)) * (1.15 if mouth == "open" else 1.0),
        mouth=mouth,
        yaw=float(np.clip(rng.normal(0.0, 0.3), -0.8, 0.8)),
        glasses=glasses,
        beard=bool(rng.random() < 0.1),
        light=float(rng.uniform(0, 2 * math.pi)),
    )


def landmarks_unit(style: FaceStyle) -> np.ndarray:
    """The five landmarks of ``style`` in head-box units, float64 ``[5, 2]`` ``(u, v)``.

    Eye centres are the iris centres, the nose landmark is the tip, mouth corners are the ends of
    the lips (raised by 0.02 for a smile, lowered by 0.04 to the middle of an open mouth).
    """
    shift = YAW_SHIFT * style.yaw
    corner_v = style.mouth_v + {"closed": 0.0, "smile": -0.02, "open": 0.04}[style.mouth]
    return np.array([
        (0.5 - style.eye_dx + shift, style.eye_v),
        (0.5 + style.eye_dx + shift, style.eye_v),
        (0.5 + 1.6 * shift, style.nose_v),
        (0.5 - style.mouth_dx + shift, corner_v),
        (0.5 + style.mouth_dx + shift, corner_v),
    ])


def render_height(height: float) -> int:
    """Head height ``R`` of the upright drawing for a face of final height ``height`` px.

    ``R = max(64, min(2 h, max(128, 1.25 h)))``: at least 64 px, twice the final size up to
    64 px, then falling to 1.25 times from 102 px on (the cost grows with ``R^2``).
    """
    return int(round(max(64.0, min(2.0 * height, max(128.0, 1.25 * height)))))


class _Pen:
    """Draws in head-box units on the hi-res canvas: ``x = x0 + u * bw``, ``y = y0 + v * bh``."""

    def __init__(self, image: Image.Image, origin: tuple[float, float], bw: float, bh: float):
        self.draw = ImageDraw.Draw(image)
        self.origin = origin
        self.bw = bw
        self.bh = bh

    def point(self, u: float, v: float) -> tuple[float, float]:
        return self.origin[0] + u * self.bw, self.origin[1] + v * self.bh

    def width(self, width_v: float) -> int:
        return max(1, int(round(width_v * self.bh)))

    def ellipse(self, u: float, v: float, ru: float, rv: float, fill: Color | None,
                outline: Color | None = None, width_v: float = 0.0) -> None:
        """An ellipse centred on ``(u, v)``; Pillow fills pixels ``x0..x1`` of its bounding box."""
        x, y = self.point(u, v)
        rx, ry = max(ru * self.bw, 0.5), max(rv * self.bh, 0.5)
        x0, y0 = x - rx, y - ry
        bounds = (x0, y0, x0 + max(2 * rx - 1, 0.0), y0 + max(2 * ry - 1, 0.0))
        self.draw.ellipse(bounds, fill=fill, outline=outline,
                          width=self.width(width_v) if outline else 0)

    def circle(self, u: float, v: float, radius_v: float, fill: Color) -> None:
        self.ellipse(u, v, radius_v * self.bh / self.bw, radius_v, fill)

    def polygon(self, points: list[tuple[float, float]], fill: Color) -> None:
        """A polygon; Pillow puts vertices on pixel centres, hence the half-pixel shift."""
        self.draw.polygon([_half_shift(self.point(u, v)) for u, v in points], fill=fill)

    def line(self, points: list[tuple[float, float]], width_v: float, fill: Color) -> None:
        pixels = [_half_shift(self.point(u, v)) for u, v in points]
        self.draw.line(pixels, fill=fill, width=self.width(width_v), joint="curve")


def _half_shift(point: tuple[float, float]) -> tuple[float, float]:
    return point[0] - 0.5, point[1] - 0.5


def _clip_color(values: np.ndarray | tuple[float, ...]) -> Color:
    r, g, b = (min(255, max(0, int(round(float(c))))) for c in values)
    return r, g, b


def _shade(color: Color, gain: float) -> Color:
    return _clip_color(tuple(c * gain for c in color))


def _draw_body(pen: _Pen, style: FaceStyle) -> None:
    """Shoulders, hair behind the head, neck and ears (everything behind the face oval)."""
    pen.ellipse(0.5, 1.72, 0.78, 0.45, style.clothes)
    if style.hair_style == "long":
        pen.ellipse(0.5, 0.32, 0.58, 0.62, style.hair)
        pen.polygon([(-0.08, 0.35), (1.08, 0.35), (1.12, 1.3), (-0.12, 1.3)], style.hair)
    elif style.hair_style in ("short", "fringe"):
        pen.ellipse(0.5, 0.2, 0.53, 0.42, style.hair)
    neck = _shade(style.skin, 0.8)
    pen.polygon([(0.33, 0.75), (0.67, 0.75), (0.7, 1.35), (0.3, 1.35)], neck)
    pen.ellipse(0.5, 1.33, 0.2, 0.07, neck)
    ear = _shade(style.skin, 0.92)
    for side in (0.065, 0.935):
        pen.ellipse(side, 0.48, 0.065, 0.1, ear)
        pen.ellipse(side, 0.48, 0.03, 0.055, _shade(style.skin, 0.75))


def _draw_head(pen: _Pen, style: FaceStyle) -> None:
    """Face oval shaded by a light from angle ``style.light``, beard, hair or hat in front."""
    towards = np.array([math.cos(style.light), math.sin(style.light)])
    for step, gain in ((0, 0.84), (1, 0.93), (2, 1.0)):
        u, v = (0.5, 0.45) + 0.025 * step * towards
        pen.ellipse(u, v, 0.41 - 0.035 * step, 0.55 - 0.03 * step, _shade(style.skin, gain))
    if style.beard:
        top = math.asin((0.66 - 0.45) / 0.55)
        angles = np.linspace(top, math.pi - top, 24)
        jaw = [(0.5 + 0.41 * math.cos(a), 0.45 + 0.55 * math.sin(a)) for a in angles]
        pen.polygon(jaw, _shade(style.hair, 0.9))
    edge = style.hairline
    if style.hair_style in ("short", "long"):
        pen.ellipse(0.5, edge - 0.2, 0.46, 0.22, style.hair)
        for side in (0.1, 0.9):
            pen.ellipse(side, 0.18, 0.05, 0.17, style.hair)
    elif style.hair_style == "fringe":
        teeth = [(0.1 + 0.8 * i / 8, edge + (0.12 if i % 2 else 0.06)) for i in range(9)]
        pen.polygon([(0.06, 0.3), (0.06, -0.1), (0.5, -0.3), (0.94, -0.1), (0.94, 0.3)]
                    + teeth[::-1], style.hair)
    elif style.hair_style == "hat":
        pen.polygon([(0.1, edge + 0.02), (0.16, -0.4), (0.84, -0.4), (0.9, edge + 0.02)],
                    style.clothes)
        pen.ellipse(0.5, edge + 0.02, 0.62, 0.07, _shade(style.clothes, 0.7))
    if style.hair_style == "long":
        for u in (0.1, 0.9):
            pen.polygon([(u - 0.06, 0.1), (u + 0.05, 0.1), (u + 0.03, 0.85), (u - 0.1, 0.9)],
                        style.hair)


def _draw_eyes(pen: _Pen, style: FaceStyle) -> None:
    """Eye whites, irises, pupils, lids and brows; the iris centre is the landmark."""
    left, right = landmarks_unit(style)[:2]
    brow_lift = 0.03 if style.mouth == "open" else 0.0
    for (u, v), sign in ((left, -1.0), (right, 1.0)):
        width = 0.075 * (1 - 0.4 * max(0.0, sign * style.yaw))
        height = 0.032 * style.eye_open
        pen.ellipse(u, v, width, height, (238, 236, 228))
        pen.circle(u, v, min(0.032, height * 1.05), style.iris)
        pen.circle(u, v, min(0.015, height * 0.5), (12, 10, 10))
        pen.circle(u + 0.008, v - 0.008, 0.006, (250, 250, 250))
        lid = [(u - width, v + 0.004), (u, v - height - 0.004), (u + width, v + 0.004)]
        pen.line(lid, 0.01, _shade(style.skin, 0.35))
        brow_v = v - 0.085 - brow_lift
        brow = [(u - 1.2 * width, brow_v + 0.015), (u, brow_v - 0.01),
                (u + 1.2 * width, brow_v + 0.01)]
        pen.line(brow, 0.022, _shade(style.hair, 0.7))


def _draw_nose_mouth(pen: _Pen, style: FaceStyle) -> None:
    """Nose (bridge shadow, wings, nostrils) and mouth (closed, smiling or open)."""
    nose_u, nose_v = landmarks_unit(style)[2]
    (left_u, corner_v), (right_u, _) = landmarks_unit(style)[3:]
    shadow = _shade(style.skin, 0.78)
    pen.line([(nose_u - 0.03, style.eye_v + 0.04), (nose_u - 0.045, nose_v - 0.02)], 0.012, shadow)
    pen.ellipse(nose_u, nose_v - 0.005, 0.06, 0.04, _shade(style.skin, 0.88))
    pen.ellipse(nose_u, nose_v - 0.012, 0.025, 0.02, _shade(style.skin, 1.06))
    for side in (-1, 1):
        pen.ellipse(nose_u + side * 0.028, nose_v + 0.015, 0.014, 0.008, _shade(style.skin, 0.4))
    lips = _clip_color(np.array(style.skin) * (0.78, 0.5, 0.52) + (40, 10, 10))
    mid = 0.5 * (left_u + right_u)
    if style.mouth == "open":
        pen.ellipse(mid, corner_v, right_u - mid, 0.085, lips)
        pen.ellipse(mid, corner_v + 0.005, 0.8 * (right_u - mid), 0.065, (45, 15, 18))
        pen.polygon([(mid - 0.06, corner_v - 0.05), (mid + 0.06, corner_v - 0.05),
                     (mid + 0.055, corner_v - 0.025), (mid - 0.055, corner_v - 0.025)],
                    (235, 230, 220))
        return
    dip = 0.02 if style.mouth == "smile" else 0.0
    upper = [(left_u, corner_v), (mid - 0.04, corner_v - 0.02 + dip), (mid, corner_v - 0.012 + dip),
             (mid + 0.04, corner_v - 0.02 + dip), (right_u, corner_v)]
    lower = [(right_u, corner_v), (mid + 0.05, corner_v + 0.03 + dip),
             (mid - 0.05, corner_v + 0.03 + dip), (left_u, corner_v)]
    pen.polygon(upper + lower, lips)
    pen.line([(left_u, corner_v), (mid, corner_v + 0.006 + dip), (right_u, corner_v)], 0.01,
             _shade(lips, 0.45))


def _draw_glasses(pen: _Pen, style: FaceStyle) -> None:
    """Frames around both eyes, a bridge and temples to the ears; dark lenses for sunglasses."""
    left, right = landmarks_unit(style)[:2]
    frame = (25, 22, 20) if style.glasses == "sun" else _shade(style.clothes, 0.5)
    lens = (22, 24, 30) if style.glasses == "sun" else None
    for u, v in (left, right):
        pen.ellipse(u, v, 0.11, 0.065, lens, outline=frame, width_v=0.014)
    bridge_v = left[1] - 0.015
    pen.line([(left[0] + 0.11, bridge_v), (right[0] - 0.11, bridge_v)], 0.014, frame)
    pen.line([(left[0] - 0.11, bridge_v), (0.05, bridge_v + 0.02)], 0.014, frame)
    pen.line([(right[0] + 0.11, bridge_v), (0.95, bridge_v + 0.02)], 0.014, frame)


def draw_upright(style: FaceStyle, head_height: int) -> tuple[Image.Image, tuple[float, float]]:
    """Draw the upright face on an RGBA canvas with a head box ``aspect * R`` wide, ``R`` high.

    Returns the canvas and the pixel position ``(x0, y0)`` of the head box's top-left corner;
    head-box point ``(u, v)`` is at ``(x0 + u * aspect * R, y0 + v * R)``.
    """
    width = style.aspect * head_height
    origin = (-CANVAS_U[0] * width, -CANVAS_V[0] * head_height)
    size = (math.ceil((CANVAS_U[1] - CANVAS_U[0]) * width),
            math.ceil((CANVAS_V[1] - CANVAS_V[0]) * head_height))
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    pen = _Pen(canvas, origin, width, float(head_height))
    _draw_body(pen, style)
    _draw_head(pen, style)
    _draw_eyes(pen, style)
    _draw_nose_mouth(pen, style)
    if style.glasses:
        _draw_glasses(pen, style)
    _fade_bottom(canvas, origin[1] + FADE_V[0] * head_height, origin[1] + FADE_V[1] * head_height)
    return canvas, origin


def _fade_bottom(canvas: Image.Image, start: float, stop: float) -> None:
    """Multiply the alpha of rows below ``start`` by a ramp reaching 0 at ``stop`` (pixels).

    The neck and shoulders then fade out instead of ending at a straight canvas edge.
    """
    rows = np.arange(canvas.height, dtype=np.float32) + 0.5
    ramp = np.clip((stop - rows) / (stop - start), 0.0, 1.0)
    column = Image.fromarray((ramp * 255).round().astype(np.uint8)[:, None])
    alpha = ImageChops.multiply(canvas.getchannel("A"), column.resize(canvas.size))
    canvas.putalpha(alpha)


def head_half_extents(aspect: float, squash: float, theta: float) -> tuple[float, float]:
    """Half width and half height of the head ellipse after squash and rotation by ``theta``.

    In units of the upright head height: the ellipse with semi-axes ``a = aspect * squash / 2``,
    ``b = 1 / 2`` rotated by ``theta`` spans ``sqrt(a^2 cos^2 + b^2 sin^2)`` horizontally and
    ``sqrt(a^2 sin^2 + b^2 cos^2)`` vertically from its centre.
    """
    a = 0.5 * aspect * squash
    b = 0.5
    cos, sin = math.cos(theta), math.sin(theta)
    return math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)


def render_face(style: FaceStyle, height: float, rotation_deg: float, squash: float,
                blur_sigma: float) -> FacePatch:
    """Render ``style`` so that its transformed head box is ``height`` px high.

    ``squash`` (<= 1) scales the face's width before the rotation by ``rotation_deg``. The scale
    ``f`` solves ``2 f sqrt((a s sin t)^2 + (b cos t)^2) = height`` for the head ellipse with
    semi-axes ``a = aspect R / 2``, ``b = R / 2``. A drawing at most 1.3 times the final size is
    warped in one affine step; a larger one is first resized with an antialiasing filter.
    ``blur_sigma`` (px, 0 = none) blurs the whole patch.
    """
    head_height = render_height(height)
    canvas, origin = draw_upright(style, head_height)
    theta = math.radians(rotation_deg)
    scale = 0.5 * height / (head_half_extents(style.aspect, squash, theta)[1] * head_height)
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = np.array([[cos, sin], [-sin, cos]])
    image = canvas.convert("RGBa")
    if scale * 1.3 >= 1.0:
        stretch = np.diag([scale * squash, scale])
        image_matrix = rotation @ stretch
    else:
        size = (max(1, round(canvas.width * scale * squash)), max(1, round(canvas.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        stretch = np.diag([size[0] / canvas.width, size[1] / canvas.height])
        image_matrix = rotation
    factor = max(1, int(blur_sigma / BLUR_STEP))
    warped, shift = _warp(image, image_matrix, math.ceil(3 * blur_sigma) + 1, factor)
    if blur_sigma > 0:
        warped = _blur(warped, blur_sigma, factor)
    bounds = warped.getbbox(alpha_only=True) or (0, 0, 1, 1)
    matrix = rotation @ stretch
    offset = shift - bounds[:2]

    def to_patch(unit: np.ndarray) -> np.ndarray:
        hires = np.asarray(origin) + unit * (style.aspect * head_height, head_height)
        return hires @ matrix.T + offset

    outline = to_patch(OUTLINE)
    return FacePatch(image=warped.crop(bounds).convert("RGBA"),
                     landmarks=to_patch(landmarks_unit(style)),
                     head=np.concatenate([outline.min(axis=0), outline.max(axis=0)]))


def _warp(image: Image.Image, matrix: np.ndarray, pad: int,
          multiple: int) -> tuple[Image.Image, np.ndarray]:
    """Apply ``q -> matrix q + t`` to ``image`` on a canvas holding it plus ``pad`` px a side,
    its sides rounded up to a multiple of ``multiple``.

    Returns the warped image and ``t``; Pillow's affine transform takes the inverse map.
    """
    corners = np.array([[0, 0], [image.width, 0], [0, image.height], [image.width, image.height]])
    moved = corners @ matrix.T
    shift = pad - moved.min(axis=0)
    size = np.ceil((moved.max(axis=0) + shift + pad) / multiple).astype(int) * multiple
    inverse = np.linalg.inv(matrix)
    offset = -inverse @ shift
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    warped = image.transform((int(size[0]), int(size[1])), Image.Transform.AFFINE, data,
                             resample=Image.Resampling.BILINEAR)
    return warped, shift


def _blur(image: Image.Image, sigma: float, factor: int) -> Image.Image:
    """Gaussian blur of ``sigma`` px; for ``factor > 1`` (sides divisible by it) the blur of
    ``sigma / factor`` runs on the image box-reduced by ``factor`` and is upsampled back, which
    keeps the pixel grid aligned (``x_small = x / factor``) at a fraction of the cost."""
    if factor == 1:
        return image.filter(ImageFilter.GaussianBlur(sigma))
    small = image.reduce(factor).filter(ImageFilter.GaussianBlur(sigma / factor))
    return small.resize(image.size, Image.Resampling.BILINEAR)
