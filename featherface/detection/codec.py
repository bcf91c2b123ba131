"""Box and landmark codec of RetinaFace (SSD-style offsets scaled by the variances ``(v0, v1)``).

All functions broadcast over leading dimensions: ``priors`` may be ``Tensor[A, 4]`` while the
other argument is ``Tensor[B, A, 4]``. Priors are ``(cx, cy, w, h)``; boxes are corners
``(x1, y1, x2, y2)``; landmarks are five ``(x, y)`` points flattened to 10 values; everything is
normalised by the network input size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featherface.detection.priors import DEFAULT_VARIANCES

Variances = tuple[float, float]


def corners_from_priors(priors: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` -> ``(cx - w/2, cy - h/2, cx + w/2, cy + h/2)``; ``Tensor[..., 4]``."""
    centre, size = priors[..., :2], priors[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def encode_boxes(
    matched: Tensor, priors: Tensor, variances: Variances = DEFAULT_VARIANCES
) -> Tensor:
    """Offsets of corner boxes from their priors.

    ``matched``: ``Tensor[..., 4]`` ``(x1, y1, x2, y2)``; ``priors``: ``Tensor[..., 4]``
    ``(cx, cy, w, h)``. Returns ``Tensor[..., 4]``::

        t_xy = ((x1 + x2) / 2 - p_xy) / (v0 * p_wh)      t_wh = log((x2 - x1) / p_wh) / v1
    """
    p_centre, p_size = priors[..., :2], priors[..., 2:]
    g_centre = (matched[..., :2] + matched[..., 2:]) / 2 - p_centre
    g_centre = g_centre / (variances[0] * p_size)
    g_size = (matched[..., 2:] - matched[..., :2]) / p_size
    return torch.cat([g_centre, torch.log(g_size) / variances[1]], dim=-1)


def decode_boxes(loc: Tensor, priors: Tensor, variances: Variances = DEFAULT_VARIANCES) -> Tensor:
    """Inverse of :func:`encode_boxes`: ``Tensor[..., 4]`` offsets -> ``(x1, y1, x2, y2)``::

    c = p_xy + t_xy * v0 * p_wh      s = p_wh * exp(t_wh * v1)
    (x1, y1) = c - s / 2             (x2, y2) = (x1, y1) + s
    """
    p_centre, p_size = priors[..., :2], priors[..., 2:]
    centre = p_centre + loc[..., :2] * variances[0] * p_size
    size = p_size * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, size + top_left], dim=-1)


def encode_landmarks(
    landmarks: Tensor, priors: Tensor, variances: Variances = DEFAULT_VARIANCES
) -> Tensor:
    """Offsets of five points from their prior centre: ``Tensor[..., 10]`` ->
    ``Tensor[..., 10]``, each point ``(l_xy - p_xy) / (v0 * p_wh)``.
    """
    points = landmarks.unflatten(-1, (5, 2))
    p_centre, p_size = priors[..., None, :2], priors[..., None, 2:]
    return ((points - p_centre) / (variances[0] * p_size)).flatten(-2)


def decode_landmarks(
    encoded: Tensor, priors: Tensor, variances: Variances = DEFAULT_VARIANCES
) -> Tensor:
    """Inverse of :func:`encode_landmarks`: each point ``p_xy + t_xy * v0 * p_wh``;
    ``Tensor[..., 10]`` -> ``Tensor[..., 10]``.
    """
    offsets = encoded.unflatten(-1, (5, 2))
    p_centre, p_size = priors[..., None, :2], priors[..., None, 2:]
    return (p_centre + offsets * variances[0] * p_size).flatten(-2)
