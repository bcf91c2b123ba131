"""Parity of exported detectors with the PyTorch network they came from.

Each network input ``float32[1, 3, H, W]`` (one image at its own size, so every check also runs
at sizes other than the traced one) goes through the PyTorch model, through a float64 copy of it
(:class:`Float64Runner`, the exact result up to float64 rounding) and through each export. The
checks test what an export must be, not one CPU's rounding: float32 results of a deep network
differ between runtimes and between CPUs (kernels, vector widths, summation orders), and for a
barely trained network on real images (pixels minus the mean, not scaled) by much more than a
fixed tolerance. The tolerances (:class:`Tolerances`, all written to ``parity.json``): ``atol``
(``export.atol``), ``box_atol_px`` (``export.box_atol_px``), ``float64_factor`` = 4 and
``rtol`` = 1e-6 (about 8 float32 ulps).

- ``onnx_raw``: the raw ONNX graph in onnxruntime. The export must be as close to the exact result
  as PyTorch is, within a margin: for every image and each output (``loc``, ``conf`` logits,
  ``landm``),
  ``max|export - float64| <= max(atol, float64_factor * max|torch - float64|)``; NaN fails.
  ``atol`` is the floor (an export that close to the exact result passes whatever PyTorch's own
  error). Rounding noise of another float32 runtime is of the size of PyTorch's (their ratio
  stays near 1: 1.26 at worst over the images and outputs of the ``ci-smoke`` models on WIDER
  images on an AMD EPYC, 1.13 reported on an Intel Xeon), while an export error (a wrong weight,
  operator, padding or layout) is orders of magnitude above it. Reported: ``max_abs_diff`` (and
  per output) of the export against PyTorch, ``images_above_atol`` (images where that exceeds
  ``atol``), the largest errors against float64 of PyTorch and of the export
  (``float64_error_torch``, ``float64_error_export``), ``float64_bound_ratio`` (the largest
  ``max|export - float64| / max(atol, float64_factor * max|torch - float64|)`` over images and
  outputs: the check passes when it is at most 1) and ``images_failed``;
- ``torchscript``: the traced module, the same rule;
- ``onnx_nms``: the ONNX graph with post-processing inside against
  :func:`featherface.detection.postprocess` with the same thresholds, applied to the raw graph's
  outputs for the same input (whose parity with PyTorch is ``onnx_raw``), so that scores at a
  threshold cannot flip with the network's rounding. Both take faces of equal score by prior
  index (``TopK``, ``NonMaxSuppression``, and the stable order that
  :func:`~featherface.detection.postprocess.select` gives NMS), so that ties decide the same
  faces on every CPU. The face lists (each by descending score) are compared up to the order of
  ties (:func:`match_detections`):

  1. a face pairs with a face of the other list whose score differs by at most ``atol`` and whose
     box corners and landmarks differ by at most ``box_atol_px + rtol * scale`` pixels each,
     ``scale`` being the largest absolute coordinate of the two faces (float32 keeps about 7
     digits: a barely trained network decodes boxes of 1e7 px, where one ulp is 1 px; for boxes
     in an image the ``rtol`` term is below 0.002 px);
  2. paired faces must come in the same order in both lists, except faces whose scores are equal
     within ``rtol`` (relative) in both lists, which may come in any order
     (``faces_out_of_order`` counts the faces of the other swaps);
  3. a face may be in one list only (``faces_at_cutoff``) when float rounding can put it on
     either side of a cut: its score is within ``atol`` of ``score_threshold``, of the score of
     the ``top_k``-th candidate (when more candidates pass the threshold), or, when both lists
     hold ``keep_k`` faces, of the last score of either list. Any other face in one list only is
     ``faces_unpaired``.

  The check passes when ``faces_out_of_order`` and ``faces_unpaired`` are 0;
  ``detections_equal`` says whether, further, every face paired (same count, nothing at a cut).
  Reported as well: ``faces`` (Python), ``faces_onnx``, ``faces_paired`` and, over paired
  faces, ``max_score_diff``, ``max_box_diff_px`` and ``max_box_diff_rel`` (relative to
  ``scale``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from featherface.detection import Detections, PriorConfig, postprocess
from featherface.errors import FeatherFaceError
from featherface.evaluate.runtime import ONNX_INPUT, Runner, TorchRunner
from featherface.export.graph_postprocess import NMS_OUTPUTS
from featherface.models.outputs import RawOutputs
from featherface.params import PostprocessSettings

OUTPUTS = ("loc", "conf", "landm")


class ParityError(FeatherFaceError):
    """An export does not reproduce its PyTorch network within the tolerances."""


class Tolerances(NamedTuple):
    """The margins of the checks (module doc): ``atol``, raw outputs against float64 (floor) and
    scores; ``box_atol_px``, box and landmark coordinates; ``float64_factor``, how much further
    from float64 than PyTorch an export may be; ``rtol``, float32 rounding (ties of scores, and
    coordinates relative to their size)."""

    atol: float = 1e-4
    box_atol_px: float = 0.01
    float64_factor: float = 4.0
    rtol: float = 1e-6


class NmsRunner:
    """Runs an ONNX graph with post-processing inside (outputs
    :data:`~featherface.export.graph_postprocess.NMS_OUTPUTS`) with onnxruntime on the CPU."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        self.path = Path(path)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own types for damaged graphs
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise FeatherFaceError(f"{self.path}: not a loadable ONNX model ({first})") from None

    def detect(self, images: Tensor) -> list[Detections]:
        """One :class:`Detections` (input pixels, by descending score) per image of a
        ``float32[B, 3, H, W]`` batch."""
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        boxes, scores, landmarks, index = (
            torch.from_numpy(value)
            for value in self.session.run(list(NMS_OUTPUTS), {ONNX_INPUT: batch})
        )
        return [
            Detections(boxes[index == b], scores[index == b], landmarks[index == b])
            for b in range(batch.shape[0])
        ]


class ExportRunners(NamedTuple):
    """The PyTorch network and its three exports, ready to run."""

    torch: TorchRunner
    onnx: Runner
    torchscript: Runner
    nms: NmsRunner


class DetectionMatch(NamedTuple):
    """Outcome of comparing two face lists (module doc); the differences are over paired faces.

    ``at_cutoff`` and ``unpaired`` count the faces of both lists that did not pair, at a cut-off
    score or not."""

    expected: int
    found: int
    paired: int
    out_of_order: int
    at_cutoff: int
    unpaired: int
    max_box_diff_px: float
    max_box_diff_rel: float
    max_score_diff: float

    @property
    def passed(self) -> bool:
        """The same faces up to the order of ties and faces at a cut-off score."""
        return self.out_of_order == 0 and self.unpaired == 0

    @property
    def equal(self) -> bool:
        """The same faces up to the order of ties: all paired, none at a cut-off."""
        return self.passed and self.expected == self.found == self.paired


def _coordinates(faces: Detections) -> np.ndarray:
    """``float64[N, 14]``: box corners then landmarks."""
    return torch.cat([faces.boxes, faces.landmarks], dim=1).double().numpy()


def _pair(
    want: np.ndarray,
    have: np.ndarray,
    want_scores: np.ndarray,
    have_scores: np.ndarray,
    tolerances: Tolerances,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pair[i]``: the ``want`` row paired with ``have`` row ``i`` (-1: none), chosen among
    the close ones as the nearest in rank; with each pair's coordinate difference and ``scale``.
    (Two faces within ``box_atol_px`` of one face would overlap fully, which NMS rules out, so
    the choice is unique in practice.)"""
    pair = np.full(len(have), -1)
    diff = np.zeros(len(have))
    scale = np.zeros(len(have))
    used = np.zeros(len(want), dtype=bool)
    want_size = np.abs(want).max(axis=1, initial=0.0)
    for rank in range(len(have)):
        coordinates = np.abs(want - have[rank]).max(axis=1, initial=0.0)
        sizes = np.maximum(want_size, np.abs(have[rank]).max(initial=0.0))
        allowed = tolerances.box_atol_px + tolerances.rtol * sizes
        close = np.abs(want_scores - have_scores[rank]) <= tolerances.atol
        candidates = np.flatnonzero(~used & close & (coordinates <= allowed))
        if candidates.size == 0:
            continue
        best = int(candidates[np.argmin(np.abs(candidates - rank))])
        used[best] = True
        pair[rank], diff[rank], scale[rank] = best, coordinates[best], sizes[best]
    return pair, diff, scale


def _tied(scores: np.ndarray, index: int, rtol: float) -> np.ndarray:
    """Which ``scores`` equal ``scores[index]`` within ``rtol`` (relative)."""
    gap = np.abs(scores - scores[index])
    return gap <= rtol * np.maximum(np.abs(scores), abs(scores[index]))


def _out_of_order(
    order: np.ndarray, want_scores: np.ndarray, have_scores: np.ndarray, rtol: float
) -> int:
    """Paired faces (``order``: their ranks in the expected list, in the found list's order;
    the scores of the pairs in the same order) that come in the other order than a face whose
    score is not equal to theirs within ``rtol`` in both lists."""
    wrong = np.zeros(order.size, dtype=bool)
    for index in range(order.size - 1):
        later = np.arange(index + 1, order.size)
        swapped = later[order[later] < order[index]]
        if swapped.size == 0:
            continue
        tied = _tied(want_scores, index, rtol) & _tied(have_scores, index, rtol)
        swapped = swapped[~tied[swapped]]
        if swapped.size:
            wrong[index] = True
            wrong[swapped] = True
    return int(wrong.sum())


def _near(scores: np.ndarray, cutoffs: Sequence[float], atol: float) -> np.ndarray:
    """Which ``scores`` are within ``atol`` of one of the ``cutoffs``."""
    if not cutoffs:
        return np.zeros(len(scores), dtype=bool)
    return (np.abs(scores[:, None] - np.asarray(cutoffs)[None, :]) <= atol).any(axis=1)


def match_detections(
    expected: Detections,
    found: Detections,
    tolerances: Tolerances,
    cutoffs: Sequence[float] = (),
) -> DetectionMatch:
    """Compare ``found`` with ``expected`` as the module doc defines; ``cutoffs``: the scores at
    which a face may be in one list only (:func:`cutoff_scores`)."""
    want, have = _coordinates(expected), _coordinates(found)
    want_scores = expected.scores.double().numpy()
    have_scores = found.scores.double().numpy()
    pair, diff, scale = _pair(want, have, want_scores, have_scores, tolerances)
    paired = pair >= 0
    order = pair[paired]
    out_of_order = _out_of_order(order, want_scores[order], have_scores[paired], tolerances.rtol)
    lone_want = np.ones(len(want), dtype=bool)
    lone_want[order] = False
    lone = np.concatenate([want_scores[lone_want], have_scores[~paired]])
    at_cutoff = int(_near(lone, cutoffs, tolerances.atol).sum())
    score_diff = np.abs(want_scores[order] - have_scores[paired])
    return DetectionMatch(
        expected=len(want),
        found=len(have),
        paired=int(paired.sum()),
        out_of_order=out_of_order,
        at_cutoff=at_cutoff,
        unpaired=len(lone) - at_cutoff,
        max_box_diff_px=float(diff.max(initial=0.0)),
        max_box_diff_rel=float((diff / np.maximum(scale, 1.0)).max(initial=0.0)),
        max_score_diff=float(score_diff.max(initial=0.0)),
    )


def cutoff_scores(
    candidates: Tensor, expected: Detections, found: Detections, settings: PostprocessSettings
) -> list[float]:
    """The cut-off scores of one image (module doc, ``onnx_nms`` 3): ``score_threshold``; the
    ``top_k``-th best of the ``candidates`` scores (``Tensor[A]``) when more than ``top_k`` pass
    the threshold; the last score of each list when both hold ``keep_k`` faces."""
    cutoffs = [settings.score_threshold]
    passing = candidates[candidates > settings.score_threshold]
    if len(passing) > settings.top_k:
        cutoffs.append(float(torch.topk(passing, settings.top_k).values[-1]))
    if len(expected.scores) == len(found.scores) == settings.keep_k:
        cutoffs += [float(expected.scores[-1]), float(found.scores[-1])]
    return cutoffs


class Float64Runner:
    """A float64 copy of a PyTorch network: the arbiter of float32 rounding (module doc)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).double().eval()

    def predict(self, images: Tensor) -> RawOutputs:
        """Raw outputs, float64, of a ``float32[B, 3, H, W]`` batch."""
        with torch.no_grad():
            return RawOutputs(*self.model(images.double()))


def _max_diff(got: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> dict[str, float]:
    """``{output: max |got - expected|}`` over ``loc``, ``conf``, ``landm`` (NaN when any
    element is NaN)."""
    diffs = {}
    for name, have, want in zip(OUTPUTS, got, expected, strict=True):
        if have.shape != want.shape:
            raise ParityError(f"{name}: shape {tuple(have.shape)} != {tuple(want.shape)}")
        diffs[name] = float((have.double() - want.double()).abs().max())
    return diffs


def _worst(*values: float) -> float:
    """The largest value, NaN when any is NaN (``max`` would depend on the argument order)."""
    return float(np.max(values))


class _RawTally:
    """Raw-output parity of one export over many inputs (module doc); NaN fails."""

    def __init__(self, tolerances: Tolerances) -> None:
        self.tolerances = tolerances
        self.worst = dict.fromkeys(OUTPUTS, 0.0)
        self.images = self.above_atol = self.failed = 0
        self.torch_error = self.export_error = self.ratio = 0.0

    def add(self, expected: RawOutputs, got: RawOutputs, exact: RawOutputs) -> None:
        """One input: PyTorch's outputs, the export's and the float64 ones."""
        atol, factor = self.tolerances.atol, self.tolerances.float64_factor
        diffs = _max_diff(got, expected)
        torch_errors, export_errors = _max_diff(expected, exact), _max_diff(got, exact)
        self.images += 1
        self.above_atol += int(not _worst(*diffs.values()) <= atol)
        failed = False
        for name in OUTPUTS:
            self.worst[name] = _worst(self.worst[name], diffs[name])
            bound = max(atol, factor * torch_errors[name])
            error = export_errors[name]
            ratio = error / bound if bound > 0 else (0.0 if error == 0 else float("inf"))
            self.ratio = _worst(self.ratio, ratio)
            failed |= not error <= bound
        self.torch_error = _worst(self.torch_error, *torch_errors.values())
        self.export_error = _worst(self.export_error, *export_errors.values())
        self.failed += int(failed)

    def result(self) -> dict[str, Any]:
        per_output = {f"max_abs_diff_{name}": value for name, value in self.worst.items()}
        return {
            "images": self.images,
            "max_abs_diff": _worst(*self.worst.values()),
            **per_output,
            "images_above_atol": self.above_atol,
            "float64_error_torch": self.torch_error,
            "float64_error_export": self.export_error,
            "float64_bound_ratio": self.ratio,
            "images_failed": self.failed,
            "passed": self.failed == 0,
        }


def _nms_result(images: int, matches: list[DetectionMatch]) -> dict[str, Any]:
    def total(field: str) -> int:
        return sum(getattr(match, field) for match in matches)

    def largest(field: str) -> float:
        return max((getattr(match, field) for match in matches), default=0.0)

    return {
        "images": images,
        "faces": total("expected"),
        "faces_onnx": total("found"),
        "faces_paired": total("paired"),
        "faces_out_of_order": total("out_of_order"),
        "faces_at_cutoff": total("at_cutoff"),
        "faces_unpaired": total("unpaired"),
        "max_box_diff_px": largest("max_box_diff_px"),
        "max_box_diff_rel": largest("max_box_diff_rel"),
        "max_score_diff": largest("max_score_diff"),
        "detections_equal": all(match.equal for match in matches),
        "passed": all(match.passed for match in matches),
    }


def check_images(
    runners: ExportRunners,
    inputs: Iterable[Tensor],
    tolerances: Tolerances,
    settings: PostprocessSettings,
    config: PriorConfig,
) -> dict[str, dict[str, Any]]:
    """The three checks of the module doc over network inputs ``float32[3, H, W]``, each run
    alone; ``{"onnx_raw": ..., "torchscript": ..., "onnx_nms": ...}`` with the figures and
    ``passed``. ``settings`` and ``config`` are those the post-processing graph was built with."""
    raw, scripted, matches = _RawTally(tolerances), _RawTally(tolerances), []
    float64 = Float64Runner(runners.torch.model)
    for image in inputs:
        batch = image[None]
        exact = float64.predict(batch)
        expected = runners.torch.predict(batch)
        exported = runners.onnx.predict(batch)
        raw.add(expected, exported, exact)
        scripted.add(expected, runners.torchscript.predict(batch), exact)
        size = (int(batch.shape[2]), int(batch.shape[3]))
        (wanted,) = postprocess(
            exported, config.prior_boxes(size), size, score_threshold=settings.score_threshold,
            top_k=settings.top_k, nms_iou=settings.nms_iou, keep_k=settings.keep_k,
            variances=config.variances,
        )  # fmt: skip
        (found,) = runners.nms.detect(batch)
        candidates = torch.softmax(exported.conf[0], dim=-1)[:, 1]
        cutoffs = cutoff_scores(candidates, wanted, found, settings)
        matches.append(match_detections(wanted, found, tolerances, cutoffs))
    return {
        "onnx_raw": raw.result(),
        "torchscript": scripted.result(),
        "onnx_nms": _nms_result(len(matches), matches),
    }


def failures(report: dict[str, Any], where: str = "") -> list[str]:
    """``"<path>: <figures>"`` of every check with ``passed: false`` in a nested report."""
    found = []
    for key, value in report.items():
        if not isinstance(value, dict):
            continue
        path = f"{where}/{key}" if where else key
        if value.get("passed") is False:
            figures = {
                k: v
                for k, v in value.items()
                if k.startswith(("max_", "faces", "images_", "float64"))
            }
            found.append(f"{path}: " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
        found += failures(value, path)
    return found
