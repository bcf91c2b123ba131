"""Composing an image from RGBA layers while measuring how much of each face later layers hide.

Pixel coordinates are continuous, pixel ``i`` covering ``[i, i + 1)``; boxes are integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class Layer:
    """An RGBA image (straight alpha) whose top-left pixel lands on image pixel ``(x, y)``; it
    may stick out of the image."""

    image: Image.Image
    x: int
    y: int


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
