"""Raw detector outputs to faces in pixels, following the original RetinaFace test script.

Per image: face score (softmax over ``(background, face)`` logits, column 1); decode boxes and
landmarks against the priors; scale the normalised values by ``(W, H)`` to pixels; keep scores
``> score_threshold``; sort by score, descending; keep ``top_k``; non-maximum suppression at
``nms_iou``; keep ``keep_k``.

NMS uses the original ``py_cpu_nms`` IoU with the +1 pixel convention
(``area = (x2 - x1 + 1) * (y2 - y1 + 1)``, same for the intersection), obtained exactly by running
``torchvision.ops.nms`` on ``(x1, y1, x2 + 1, y2 + 1)``. Faces of equal score are taken in the
order of their prior index (lower first: a stable sort, and NMS is given the ranks of that sort
rather than the scores, because ``torchvision.ops.nms`` sorts its scores again with an unstable
sort whose order of ties depends on the CPU's sort kernel); this is also the order of the ONNX
graph's ``TopK`` and ``NonMaxSuppression`` (:mod:`featherface.export.graph_postprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import nms

from featherface.detection.codec import Variances, decode_boxes, decode_landmarks
from featherface.detection.priors import DEFAULT_VARIANCES
from featherface.params import PostprocessSettings

ImageSize = tuple[int, int]
# The defaults of the selection arguments (the reference test script's, kept in one place).
_DEFAULTS = PostprocessSettings()


class Detections(NamedTuple):
    """Faces of one image, by descending score.

    boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)`` pixels; scores: ``Tensor[N]`` face probability;
    landmarks: ``Tensor[N, 10]`` five ``(x, y)`` points in pixels.
    """

    boxes: Tensor
    scores: Tensor
    landmarks: Tensor


def _per_image_sizes(image_sizes: ImageSize | Sequence[ImageSize], batch: int) -> list[ImageSize]:
    """One ``(height, width)`` per image from a shared size or a per-image list."""
    if isinstance(image_sizes[0], int | float):
        height, width = image_sizes
        return [(int(height), int(width))] * batch
    sizes = [(int(height), int(width)) for height, width in image_sizes]
    if len(sizes) != batch:
        raise ValueError(f"{len(sizes)} image sizes for a batch of {batch}")
    return sizes


def _scales(sizes: list[ImageSize], like: Tensor) -> tuple[Tensor, Tensor]:
    """``(Tensor[B, 1, 4], Tensor[B, 1, 10])`` pixel scales ``(W, H, W, H)`` and ``(W, H) * 5``."""
    wh = torch.tensor([[w, h] for h, w in sizes], dtype=like.dtype, device=like.device)
    return wh.repeat(1, 2)[:, None, :], wh.repeat(1, 5)[:, None, :]


def select(
    boxes: Tensor,
    scores: Tensor,
    landmarks: Tensor,
    score_threshold: float = _DEFAULTS.score_threshold,
    top_k: int = _DEFAULTS.top_k,
    nms_iou: float = _DEFAULTS.nms_iou,
    keep_k: int = _DEFAULTS.keep_k,
) -> Detections:
    """Threshold, sort, ``top_k``, NMS (+1 pixel IoU), ``keep_k`` for one image.

    boxes: ``Tensor[A, 4]`` pixels ``(x1, y1, x2, y2)``; scores: ``Tensor[A]``;
    landmarks: ``Tensor[A, 10]`` pixels.
    """
    keep = scores > score_threshold
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
    boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
    plus_one = boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    # strictly decreasing stand-ins for the sorted scores: NMS visits ties in the stable order
    ranks = torch.arange(len(scores), 0, -1, dtype=boxes.dtype, device=boxes.device)
    kept = nms(boxes + plus_one, ranks, nms_iou)[:keep_k]
    return Detections(boxes=boxes[kept], scores=scores[kept], landmarks=landmarks[kept])


def postprocess(
    outputs: tuple[Tensor, Tensor, Tensor],
    priors: Tensor,
    image_sizes: ImageSize | Sequence[ImageSize],
    score_threshold: float = _DEFAULTS.score_threshold,
    top_k: int = _DEFAULTS.top_k,
    nms_iou: float = _DEFAULTS.nms_iou,
    keep_k: int = _DEFAULTS.keep_k,
    scores_are_probabilities: bool = False,
    variances: Variances = DEFAULT_VARIANCES,
) -> list[Detections]:
    """Detections for a batch.

    outputs: ``(loc Tensor[B, A, 4], conf Tensor[B, A, 2], landm Tensor[B, A, 10])``, ``conf``
    logits (or probabilities when ``scores_are_probabilities``); priors: ``Tensor[A, 4]`` for the
    network input; image_sizes: one ``(height, width)`` for every image (normally the network
    input) or one per image; the normalised boxes and landmarks are multiplied by it.
    Returns one :class:`Detections` per image.
    """
    loc, conf, landm = outputs
    sizes = _per_image_sizes(image_sizes, loc.shape[0])
    with torch.no_grad():
        probs = conf if scores_are_probabilities else torch.softmax(conf, dim=-1)
        box_scale, landmark_scale = _scales(sizes, loc)
        priors = priors.to(loc)
        boxes = decode_boxes(loc, priors, variances) * box_scale
        landmarks = decode_landmarks(landm, priors, variances) * landmark_scale
        return [
            select(b, s, lm, score_threshold, top_k, nms_iou, keep_k)
            for b, s, lm in zip(boxes, probs[..., 1], landmarks, strict=True)
        ]
