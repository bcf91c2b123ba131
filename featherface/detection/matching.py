"""Assign ground-truth faces to priors, as the original RetinaFace ``match``.

For faces ``F`` and priors ``A`` (priors turned into corners), with ``IoU: Tensor[F, A]``:

1. every prior takes the face it overlaps most (``best_truth``);
2. a face whose best prior IoU is at least ``ignore_iou`` is *forced* onto that prior: the prior's
   overlap is set to 2 and its face becomes this one (a later face wins when two faces share a
   best prior); a face below ``ignore_iou`` is not forced anywhere, and since its IoU with every
   prior is then below ``positive_iou`` it gets no positive prior at all;
3. a prior is positive (label 1) when its overlap is at least ``positive_iou``, background
   (label 0) otherwise. If no face reaches ``ignore_iou`` the image is all background.

No prior is labelled ``-1``: the original marks none as ignored, it only leaves faces that are too
small for any prior out of the forcing step. Faces without landmarks (NaN) still give box and class
targets; ``landmark_valid`` marks the positive priors whose face has all ten landmark values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_iou

from featherface.detection.codec import (
    Variances,
    corners_from_priors,
    encode_boxes,
    encode_landmarks,
)
from featherface.detection.priors import DEFAULT_VARIANCES


class MatchResult(NamedTuple):
    """Training targets of one image (``Tensor[A, ...]``) or a batch (``Tensor[B, A, ...]``).

    labels: int64, 1 face / 0 background; boxes_encoded: ``encode_boxes`` of each positive
    prior's face, 0 on background priors (the loss reads positives only); landmarks_encoded:
    ``encode_landmarks`` of the prior's face where ``landmark_valid``, else 0; landmark_valid:
    bool, a positive prior whose face has landmarks. Without any matchable face everything is 0.
    """

    labels: Tensor
    boxes_encoded: Tensor
    landmarks_encoded: Tensor
    landmark_valid: Tensor


def _empty_result(priors: Tensor) -> MatchResult:
    num = priors.shape[0]
    return MatchResult(
        labels=torch.zeros(num, dtype=torch.int64, device=priors.device),
        boxes_encoded=priors.new_zeros(num, 4),
        landmarks_encoded=priors.new_zeros(num, 10),
        landmark_valid=torch.zeros(num, dtype=torch.bool, device=priors.device),
    )


def _best_faces(iou: Tensor, ignore_iou: float) -> tuple[Tensor, Tensor] | None:
    """Per-prior overlap ``Tensor[A]`` (2 where forced) and face index ``Tensor[A]`` int64, or
    None when no face reaches ``ignore_iou`` with its best prior.
    """
    best_prior_iou, best_prior = iou.max(dim=1)  # [F]
    forced = best_prior_iou >= ignore_iou
    if not bool(forced.any()):
        return None
    best_face_iou, best_face = iou.max(dim=0)  # [A]
    faces = torch.arange(iou.shape[0], device=iou.device)
    # The last forced face claiming a prior wins, as the original in-order loop does.
    claimed = torch.full_like(best_face, -1).scatter_reduce(
        0, best_prior[forced], faces[forced], reduce="amax"
    )
    is_claimed = claimed >= 0
    best_face = torch.where(is_claimed, claimed, best_face)
    best_face_iou = best_face_iou.masked_fill(is_claimed, 2.0)
    return best_face_iou, best_face


def match(
    boxes: Tensor,
    landmarks: Tensor,
    priors: Tensor,
    positive_iou: float = 0.35,
    ignore_iou: float = 0.2,
    variances: Variances = DEFAULT_VARIANCES,
) -> MatchResult:
    """Targets for one image.

    boxes: ``Tensor[F, 4]`` normalised ``(x1, y1, x2, y2)``; landmarks: ``Tensor[F, 10]``
    normalised ``(x, y)`` pairs, NaN for a face without landmarks; priors: ``Tensor[A, 4]``
    ``(cx, cy, w, h)``. Returns a :class:`MatchResult` of ``Tensor[A, ...]`` (see the module
    docstring for the rule).
    """
    if boxes.shape[0] == 0:
        return _empty_result(priors)
    boxes = boxes.to(priors)
    landmarks = landmarks.to(priors)
    chosen = _best_faces(box_iou(boxes, corners_from_priors(priors)), ignore_iou)
    if chosen is None:
        return _empty_result(priors)
    overlap, face = chosen
    positive = overlap >= positive_iou
    landmark_valid = torch.isfinite(landmarks).all(dim=1)[face] & positive
    encoded_boxes = encode_boxes(boxes[face], priors, variances)
    encoded_landmarks = encode_landmarks(landmarks[face], priors, variances)
    return MatchResult(
        labels=positive.to(torch.int64),
        boxes_encoded=torch.where(positive[:, None], encoded_boxes, 0.0),
        landmarks_encoded=torch.where(landmark_valid[:, None], encoded_landmarks, 0.0),
        landmark_valid=landmark_valid,
    )


def target_tensors(target: Any) -> tuple[Tensor, Tensor]:
    """``(boxes Tensor[F, 4], landmarks Tensor[F, 10])`` of a target given as a mapping with
    keys ``"boxes"`` and ``"landmarks"`` or an object with those attributes.
    """
    if isinstance(target, Mapping):
        return target["boxes"], target["landmarks"]
    return target.boxes, target.landmarks


def match_batch(
    targets: Sequence[Any],
    priors: Tensor,
    positive_iou: float = 0.35,
    ignore_iou: float = 0.2,
    variances: Variances = DEFAULT_VARIANCES,
) -> MatchResult:
    """:func:`match` for each target (see :func:`target_tensors`), stacked to
    ``Tensor[B, A, ...]``.
    """
    results = [
        match(*target_tensors(t), priors, positive_iou, ignore_iou, variances) for t in targets
    ]
    if not results:
        raise ValueError("match_batch needs at least one target")
    return MatchResult(*(torch.stack(field) for field in zip(*results, strict=True)))
