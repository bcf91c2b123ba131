"""Colours of the synthetic set: the RGB type, the skin and hair palettes, sampling and shading.

Shared by the faces (:mod:`.face`, :mod:`.face_render`) and the scenes (:mod:`.background`,
:mod:`.distractors`).
"""

from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]

SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 200),
    (240, 192, 150),
    (222, 170, 124),
    (196, 134, 92),
    (160, 104, 66),
    (114, 72, 46),
    (78, 50, 34),
)
HAIR_COLORS: tuple[Color, ...] = (
    (18, 15, 14),
    (40, 28, 20),
    (80, 52, 32),
    (130, 88, 52),
    (198, 160, 100),
    (160, 72, 36),
    (145, 142, 138),
    (226, 222, 212),
)


def random_color(rng: np.random.Generator, palette: tuple[Color, ...], jitter: float) -> Color:
    """A palette colour blended with its neighbour and jittered by ``±jitter`` per channel."""
    position, *noise = rng.random(4).tolist()
    position *= len(palette) - 1
    low = int(position)
    high = min(low + 1, len(palette) - 1)
    mix = position - low
    return clip_color(
        [
            (1 - mix) * a + mix * b + jitter * (2 * n - 1)
            for a, b, n in zip(palette[low], palette[high], noise, strict=True)
        ]
    )


def clip_color(values: np.ndarray | tuple[float, ...] | list[float]) -> Color:
    r, g, b = (min(255, max(0, round(float(c)))) for c in values)
    return r, g, b


def shade(color: Color, gain: float) -> Color:
    """``color`` times ``gain``, rounded and clipped to 0..255."""
    return clip_color(tuple(c * gain for c in color))
