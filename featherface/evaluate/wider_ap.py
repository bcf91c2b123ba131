"""The official WIDER FACE easy/medium/hard AP, reproduced exactly and vectorised.

Behaviour of ``widerface_evaluate/evaluation.py`` (biubug6/Pytorch_Retinaface) kept here:

1. Scores are min-max normalised once over every prediction given (all images, all events, also
   images absent from the ground truth): ``s' = (s - lo) / (hi - lo)`` with
   ``lo = min(1, min s)`` and ``hi = max(0, max s)``. When every score is the same value in
   ``[0, 1]``, ``hi - lo`` is 0, every ``s'`` is NaN, nothing passes a threshold and AP is 0;
   that result is kept, with an :class:`~featherface.evaluate.predictions.EvaluationWarning`.
2. Images of the ground truth with no boxes, or with no predictions, add nothing but their kept
   faces to ``count_face``. Images with boxes but none kept in a setting are evaluated: their
   detections are false positives unless they match an (ignored) face.
3. Per image, each prediction (file order) takes its best ground-truth box by IoU with the +1
   pixel convention, boxes ``(x, y, x + w, y + h)``; on ties the first box. If that IoU is
   ``>= 0.5``: an ignored face (not in the setting's keep list) drops the prediction from the
   proposals; a kept face not yet recalled becomes recalled; a kept face already recalled
   leaves a false positive. Below 0.5 the prediction is a false positive.
4. For thresholds ``t_k = 1 - (k + 1) / 1000``, ``k = 0..999``, ``r`` is the LAST prediction of
   the image (file order, no re-sorting) with ``s' >= t_k``; predictions ``0..r`` count:
   ``proposals_k`` = those not dropped, ``tp_k`` = faces recalled by them. Summed over images:
   ``precision_k = tp_k / proposals_k``, ``recall_k = tp_k / count_face``, where ``count_face``
   is the number of kept faces of every ground-truth image.
5. AP is the VOC all-point area under the precision envelope.

Vectorisation: "predictions ``0..r``" is the set ``{j : max(s'_j..s'_end) >= t_k}`` (a
reverse running maximum), so each prediction counts at every threshold from the first one it
passes on, and the per-threshold sums over all images are cumulative sums of one ``bincount``
over that first threshold. "Recalled for the first time" is the first occurrence of a kept
face in file order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featherface.data.schema import DIFFICULTIES, KEEP_COLUMNS
from featherface.data.wider_mat import read_ground_truth
from featherface.errors import FeatherFaceError
from featherface.evaluate.predictions import (
    EvaluationWarning,
    Predictions,
    warn_if_mostly_missing,
)

IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000
_LISTED_MISSING = 5


@dataclass(frozen=True)
class GroundTruthImage:
    """One image: boxes ``float64[n, 4]`` ``(x, y, w, h)`` pixels, 0-based kept indices."""

    event: str
    name: str
    boxes: np.ndarray
    keep: dict[str, np.ndarray]


@dataclass(frozen=True)
class WiderGroundTruth:
    """The boxes and easy/medium/hard keep lists of the images to evaluate."""

    images: tuple[GroundTruthImage, ...]

    @classmethod
    def from_mat(cls, folder: str | Path) -> WiderGroundTruth:
        """The official ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``."""
        return cls(
            tuple(
                GroundTruthImage(
                    image.event, image.name, image.boxes.astype(np.float64), dict(image.keep)
                )
                for image in read_ground_truth(folder)
            )
        )

    @classmethod
    def from_tables(
        cls, images: pd.DataFrame, faces: pd.DataFrame, split: str = "val"
    ) -> WiderGroundTruth:
        """The canonical ``images``/``faces`` tables (see :mod:`featherface.data.schema`).

        Boxes are taken in ``face_index`` order; the keep lists are the faces whose
        ``keep_<setting>`` is true. A face of the split without keep flags is an error.
        """
        chosen = images[images["split"] == split]
        rows = faces[faces["image_id"].isin(chosen["image_id"])]
        if rows[list(KEEP_COLUMNS)].isna().any(axis=None):
            raise FeatherFaceError(f"the {split} faces have no easy/medium/hard keep flags")
        groups = {key: group.sort_values("face_index") for key, group in rows.groupby("image_id")}
        empty = rows.iloc[:0]
        result = []
        for image_id, path in zip(chosen["image_id"], chosen["path"], strict=True):
            group = groups.get(image_id, empty)
            event, file = str(path).split("/", 1)
            keep = {
                setting: np.flatnonzero(group[f"keep_{setting}"].to_numpy(bool))
                for setting in DIFFICULTIES
            }
            boxes = group[["x", "y", "w", "h"]].to_numpy(np.float64).reshape(-1, 4)
            result.append(GroundTruthImage(event, file.removesuffix(".jpg"), boxes, keep))
        return cls(tuple(result))

    def select(self, paths: Iterable[str]) -> WiderGroundTruth:
        """The images whose ``event/name.jpg`` (or ``event/name``) is in ``paths``."""
        wanted = {str(path).removesuffix(".jpg") for path in paths}
        return WiderGroundTruth(
            tuple(image for image in self.images if f"{image.event}/{image.name}" in wanted)
        )

    def expected(self) -> dict[str, list[str]]:
        """``{event: [image name, ...]}``, the prediction files an evaluation needs."""
        names: dict[str, list[str]] = {}
        for image in self.images:
            names.setdefault(image.event, []).append(image.name)
        return names

    def kept_mask(self, setting: str) -> np.ndarray:
        """``bool[G]`` over all boxes (image order, then box order): kept in ``setting``."""
        sizes = [len(image.boxes) for image in self.images]
        starts = np.cumsum([0, *sizes], dtype=np.int64)[:-1]
        kept = np.zeros(sum(sizes), dtype=bool)
        indices = [
            start + image.keep[setting] for start, image in zip(starts, self.images, strict=True)
        ]
        kept[np.concatenate([np.zeros(0, dtype=np.int64), *indices])] = True
        return kept

    def face_counts(self) -> dict[str, int]:
        """Kept faces per setting (the official ``count_face``)."""
        return {s: sum(len(image.keep[s]) for image in self.images) for s in DIFFICULTIES}


@dataclass(frozen=True)
class WiderResult:
    """AP per setting and the PR curves behind it.

    curves[setting] = ``(recall float64[T], precision float64[T])`` at ``thresholds[k]``
    (descending); precision is NaN where no prediction passes the threshold.
    """

    ap: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    thresholds: np.ndarray
    faces: dict[str, int]

    def metrics(self) -> dict[str, float]:
        """``{"ap_easy": ..., "ap_medium": ..., "ap_hard": ...}`` (the project's metric names)."""
        return {f"ap_{setting}": value for setting, value in self.ap.items()}


def score_thresholds(count: int = NUM_THRESHOLDS) -> np.ndarray:
    """``float64[count]``: ``t_k = 1 - (k + 1) / count``, descending from ``1 - 1/count`` to 0."""
    return 1.0 - np.arange(1, count + 1, dtype=np.float64) / count


def _checked(predictions: Mapping[str, Mapping[str, np.ndarray]]) -> Predictions:
    """Every array as finite ``float64[N, 5]`` (an empty one may have any shape); else ValueError.

    A NaN or infinite value would make the score normalisation, hence every AP, meaningless.
    """
    result: Predictions = {}
    for event, images in predictions.items():
        result[event] = {}
        for name, boxes in images.items():
            array = np.asarray(boxes, dtype=np.float64)
            if array.size == 0:
                array = array.reshape(0, 5)
            if array.ndim != 2 or array.shape[1] != 5:
                raise ValueError(f"predictions[{event!r}][{name!r}] has shape {array.shape}")
            if not np.isfinite(array).all():
                row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
                raise ValueError(f"predictions[{event!r}][{name!r}] row {row} is not finite")
            result[event][name] = array
    return result


def score_range(predictions: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[float, float]:
    """``(lo, hi)`` of the official normalisation: ``min(1, min s)`` and ``max(0, max s)``.

    predictions: ``[event][name] -> float64[N, 5]``, the score in the last column.
    """
    scores = [boxes[:, 4] for images in predictions.values() for boxes in images.values()]
    column = np.concatenate([np.zeros(0), *scores])
    if not len(column):
        return 1.0, 0.0
    return min(float(column.min()), 1.0), max(float(column.max()), 0.0)


def overlaps_plus_one(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """IoU ``float64[N, K]`` of corner boxes ``float64[N, 4]`` and ``float64[K, 4]``.

    ``iw = min(x2, x2') - max(x1, x1') + 1`` (same for ``ih``); where both are positive,
    ``IoU = iw * ih / ((x2 - x1 + 1) * (y2 - y1 + 1) + area' - iw * ih)``, else 0 (the
    operation order of the official ``bbox_overlaps``, so values agree to the last bit).
    """
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i])[:, None] for i in range(4))
    qx1, qy1, qx2, qy2 = (np.ascontiguousarray(query[:, i]) for i in range(4))
    iw = np.minimum(x2, qx2)
    iw -= np.maximum(x1, qx1)
    iw += 1
    ih = np.minimum(y2, qy2)
    ih -= np.maximum(y1, qy1)
    ih += 1
    inter = iw * ih
    union = (x2 - x1 + 1) * (y2 - y1 + 1) + (qx2 - qx1 + 1) * (qy2 - qy1 + 1)
    union -= inter
    result = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=result, where=(iw > 0) & (ih > 0))
    return result


def _corners(xywh: np.ndarray) -> np.ndarray:
    """``(x, y, w, h)`` to ``(x, y, x + w, y + h)``, ``float64[N, 4]``."""
    corners = np.array(xywh[:, :4], dtype=np.float64)
    corners[:, 2:] += corners[:, :2]
    return corners


def _lookup(
    predictions: Predictions,
    truth: WiderGroundTruth,
    missing_as_empty: bool,
) -> list[np.ndarray | None]:
    """Each ground-truth image's ``float64[N, 5]`` predictions (``None`` where missing)."""
    found = [predictions.get(image.event, {}).get(image.name) for image in truth.images]
    missing = [
        f"{image.event}/{image.name}"
        for image, boxes in zip(truth.images, found, strict=True)
        if boxes is None
    ]
    if missing and not missing_as_empty:
        more = len(missing) - _LISTED_MISSING
        raise FeatherFaceError(
            f"{len(missing)} images have no predictions: {', '.join(missing[:_LISTED_MISSING])}"
            + (f" and {more} more" if more > 0 else "")
            + "; use --missing-as-empty to count them as images without detections"
        )
    warn_if_mostly_missing(len(missing), len(truth.images), "predictions", stacklevel=3)
    return found


def _warn_if_unrankable(predictions: Predictions, score_lo: float, score_hi: float) -> None:
    """An :class:`EvaluationWarning` when the normalisation divides 0 by 0 (AP 0 by protocol)."""
    if score_hi != score_lo:
        return
    count = sum(len(boxes) for images in predictions.values() for boxes in images.values())
    if count:
        message = (
            f"all {count} scores are equal ({score_lo}): the official protocol's thresholds "
            "cannot rank them, AP is 0"
        )
        warnings.warn(message, EvaluationWarning, stacklevel=3)


def _match(
    truth: WiderGroundTruth,
    found: list[np.ndarray | None],
    score_lo: float,
    score_span: float,
    iou_threshold: float,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluated prediction, in image then file order: ``(face int64[P], first int64[P])``.

    face: global index of the best ground-truth box when its IoU ``>= iou_threshold``, else -1.
    first: the first threshold index ``k`` whose ``t_k`` the reverse running maximum of the
    normalised scores reaches (``len(thresholds)`` when none).
    """
    ascending = thresholds[::-1]
    faces, firsts = [], []
    offset = 0
    for image, boxes in zip(truth.images, found, strict=True):
        count = len(image.boxes)
        if count and boxes is not None and len(boxes):
            iou = overlaps_plus_one(_corners(boxes), _corners(image.boxes))
            best = iou.argmax(axis=1)
            hit = iou[np.arange(len(best)), best] >= iou_threshold
            faces.append(np.where(hit, best + offset, -1))
            with np.errstate(invalid="ignore", divide="ignore"):
                scores = (boxes[:, 4] - score_lo) / score_span
            scores[np.isnan(scores)] = -np.inf
            running = np.maximum.accumulate(scores[::-1])[::-1]
            passed = np.searchsorted(ascending, running, side="right")
            firsts.append(len(thresholds) - passed)
        offset += count
    if not faces:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(faces), np.concatenate(firsts)


def _pr_curve(
    face: np.ndarray, first: np.ndarray, kept: np.ndarray, count_face: int, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` ``float64[steps]`` of one setting; ``kept``: ``bool[G]``."""
    matched = face >= 0
    on_kept = np.zeros(len(face), dtype=bool)
    on_kept[matched] = kept[face[matched]]
    proposal = ~(matched & ~on_kept)
    positions = np.flatnonzero(on_kept)
    _, first_seen = np.unique(face[positions], return_index=True)
    recalled = np.zeros(len(face), dtype=bool)
    recalled[positions[first_seen]] = True
    proposals = np.cumsum(np.bincount(first, weights=proposal, minlength=steps + 1)[:steps])
    tp = np.cumsum(np.bincount(first, weights=recalled, minlength=steps + 1)[:steps])
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / np.float64(count_face), tp / proposals


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: ``sum (r_{i+1} - r_i) * envelope(p)_{i+1}`` where recall changes.

    The curve is padded with ``(0, 0)`` in front and ``(1, 0)`` behind; the envelope is the
    running maximum of precision from the right (NaN propagates, as in the official loop).
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def evaluate(
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    ground_truth: WiderGroundTruth,
    *,
    iou_threshold: float = IOU_THRESHOLD,
    num_thresholds: int = NUM_THRESHOLDS,
    missing_as_empty: bool = False,
) -> WiderResult:
    """Easy/medium/hard AP and PR curves of ``predictions[event][name]`` (``float[N, 5]``).

    Rows are ``(x, y, w, h, score)`` in file order (see the module docstring for the exact
    protocol). An image of ``ground_truth`` without an entry raises :class:`FeatherFaceError`
    unless ``missing_as_empty`` (then it has no detections). Results the protocol defines but
    that are likely mistakes (all scores equal, so AP 0; more than half of the images without
    an entry) come with an :class:`~featherface.evaluate.predictions.EvaluationWarning`.
    """
    predictions = _checked(predictions)
    found = _lookup(predictions, ground_truth, missing_as_empty)
    score_lo, score_hi = score_range(predictions)
    _warn_if_unrankable(predictions, score_lo, score_hi)
    thresholds = score_thresholds(num_thresholds)
    face, first = _match(
        ground_truth, found, score_lo, score_hi - score_lo, iou_threshold, thresholds
    )
    counts = ground_truth.face_counts()
    ap, curves = {}, {}
    for setting in DIFFICULTIES:
        kept = ground_truth.kept_mask(setting)
        curves[setting] = _pr_curve(face, first, kept, counts[setting], num_thresholds)
        ap[setting] = voc_ap(*curves[setting])
    return WiderResult(ap=ap, curves=curves, thresholds=thresholds, faces=counts)
