"""Procedural faces: the look of one face, drawn at random, and its exact five landmarks.

Coordinates. A face is designed in head-box units ``(u, v)``: ``u`` runs from the left ear (0) to
the right ear (1) and ``v`` from the hair line (0) to the chin (1). The head outline is the ellipse
inscribed in that unit square, so the upright face's WIDER-style box is the unit square.
:func:`.face_render.render_face` draws a :class:`FaceStyle` into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from featherface.data.synthetic.colors import (
    HAIR_COLORS,
    SKIN_TONES,
    Color,
    clip_color,
    random_color,
)

IRIS_COLORS: tuple[Color, ...] = ((55, 36, 22), (92, 62, 34), (58, 96, 136), (68, 104, 66))
HAIR_STYLES: tuple[str, ...] = ("short", "short", "fringe", "long", "long", "bald", "hat")
MOUTHS: tuple[str, ...] = ("closed", "smile", "open")
YAW_SHIFT = 0.1


@dataclass(frozen=True)
class FaceStyle:
    """The look of one face; lengths are in head-box units (see the module docstring).

    ``yaw`` in ``[-1, 1]`` shifts eyes, nose and mouth by ``YAW_SHIFT * yaw`` towards image-right
    (nose tip 1.6 times as far) and narrows the eye on that side, imitating a turned head.
    ``light`` is the direction (radians, head-box axes) the light comes from.
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
        clothes=clip_color(rng.uniform(20, 235, 3)),
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
    return np.array(
        [
            (0.5 - style.eye_dx + shift, style.eye_v),
            (0.5 + style.eye_dx + shift, style.eye_v),
            (0.5 + 1.6 * shift, style.nose_v),
            (0.5 - style.mouth_dx + shift, corner_v),
            (0.5 + style.mouth_dx + shift, corner_v),
        ]
    )


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
