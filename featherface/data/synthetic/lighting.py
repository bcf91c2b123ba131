"""The scene light and the camera, applied last to a composed image.

:func:`lighting` builds smooth shade and glare maps (a global ramp plus local shadows and glares
on faces); :func:`finish` blurs the image, applies the light and adds sensor noise. Pixel
coordinates are continuous, pixel ``i`` covering ``[i, i + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter


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
