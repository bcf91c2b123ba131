"""Parity of exported detectors with the PyTorch network they came from.

Each network input ``float32[1, 3, H, W]`` (one image at its own size, so every check also runs
at sizes other than the traced one) goes through the PyTorch model and through each export:

- ``onnx_raw``: the raw ONNX graph in onnxruntime against PyTorch: the largest absolute
  difference over all elements of ``loc``, ``conf`` (logits) and ``landm``, each reported. An
  image passes when it is ``<= atol``, or else when the export is no further from the float64
  result of the same network than PyTorch's own float32 result is
  (``max|export - f64| <= max(atol, max|torch - f64|)``): a deep network on large inputs
  (``images`` are pixels minus the mean, not scaled) carries float32 rounding noise above
  ``atol`` whichever runtime computes it, and that noise is not an export error. Reported:
  ``max_abs_diff`` (and per output), ``images_above_atol``, and over those images the largest
  distances of PyTorch and of the export from float64 (``float64_error_torch``,
  ``float64_error_export``; 0 when no image is above ``atol``);
- ``torchscript``: the traced module, the same comparison;
- ``onnx_nms``: the ONNX graph with post-processing inside against
  :func:`featherface.detection.postprocess` with the same thresholds, applied to the raw graph's
  outputs for the same input (whose parity with PyTorch is ``onnx_raw``), so that scores at a
  threshold cannot flip with the network's rounding. The two face lists are *the same* when they
  have the same length and pair one to one: going down the ONNX list (by descending score), each
  face pairs with the nearest-ranked unpaired Python face whose score differs by at most
  ``atol`` and whose box corners and landmarks differ by at most ``box_atol_px`` pixels each.
  Faces of near-equal score may thus swap ranks; nothing else may differ.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable
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


class ParityError(FeatherFaceError):
    """An export does not reproduce its PyTorch network within the tolerances."""


class Tolerances(NamedTuple):
    """``atol``: raw outputs and scores; ``box_atol_px``: box and landmark coordinates."""

    atol: float = 1e-4
    box_atol_px: float = 0.01


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
    """Outcome of pairing two face lists (module doc); the differences are over paired faces."""

    expected: int
    found: int
    paired: int
    max_box_diff_px: float
    max_score_diff: float

    @property
    def equal(self) -> bool:
        """Same number of faces, all paired."""
        return self.expected == self.found == self.paired


def match_detections(
    expected: Detections, found: Detections, tolerances: Tolerances
) -> DetectionMatch:
    """Pair ``found`` with ``expected`` as the module doc defines."""
    want = torch.cat([expected.boxes, expected.landmarks], dim=1).numpy().astype(np.float64)
    have = torch.cat([found.boxes, found.landmarks], dim=1).numpy().astype(np.float64)
    want_scores = expected.scores.numpy().astype(np.float64)
    have_scores = found.scores.numpy().astype(np.float64)
    used = np.zeros(len(want), dtype=bool)
    box_diff = score_diff = 0.0
    for rank in range(len(have)):
        coordinates = np.abs(want - have[rank]).max(axis=1, initial=0.0)
        scores = np.abs(want_scores - have_scores[rank])
        close = ~used & (coordinates <= tolerances.box_atol_px) & (scores <= tolerances.atol)
        candidates = np.flatnonzero(close)
        if candidates.size == 0:
            continue
        best = candidates[np.argmin(np.abs(candidates - rank))]
        used[best] = True
        box_diff = max(box_diff, float(coordinates[best]))
        score_diff = max(score_diff, float(scores[best]))
    return DetectionMatch(len(want), len(have), int(used.sum()), box_diff, score_diff)


class Float64Runner:
    """A float64 copy of a PyTorch network: the arbiter of float32 rounding (module doc)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).double().eval()

    def predict(self, images: Tensor) -> RawOutputs:
        """Raw outputs, float64, of a ``float32[B, 3, H, W]`` batch."""
        with torch.no_grad():
            return RawOutputs(*self.model(images.double()))


def _max_diff(got: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> dict[str, float]:
    """``{output: max |got - expected|}`` over ``loc``, ``conf``, ``landm``."""
    diffs = {}
    for name, have, want in zip(("loc", "conf", "landm"), got, expected, strict=True):
        if have.shape != want.shape:
            raise ParityError(f"{name}: shape {tuple(have.shape)} != {tuple(want.shape)}")
        diffs[name] = float((have.double() - want.double()).abs().max())
    return diffs


class _RawTally:
    """Raw-output parity of one export over many inputs (module doc); NaN fails."""

    def __init__(self, atol: float) -> None:
        self.atol = atol
        self.worst = {"loc": 0.0, "conf": 0.0, "landm": 0.0}
        self.images = self.above_atol = self.failed = 0
        self.torch_error = self.export_error = 0.0

    def add(self, expected: RawOutputs, got: RawOutputs, exact: Callable[[], RawOutputs]) -> None:
        """One input: PyTorch's outputs, the export's, and the float64 ones (computed on
        demand)."""
        diffs = _max_diff(got, expected)
        self.images += 1
        for name, diff in diffs.items():
            self.worst[name] = float(np.maximum(self.worst[name], diff))
        largest = float(np.max(list(diffs.values())))
        if largest <= self.atol:
            return
        self.above_atol += 1
        torch_error = max(_max_diff(expected, exact()).values())
        export_error = float(np.max(list(_max_diff(got, exact()).values())))
        self.torch_error = max(self.torch_error, torch_error)
        self.export_error = float(np.maximum(self.export_error, export_error))
        if not export_error <= max(self.atol, torch_error):
            self.failed += 1

    def result(self) -> dict[str, Any]:
        per_output = {f"max_abs_diff_{name}": value for name, value in self.worst.items()}
        return {
            "images": self.images,
            "max_abs_diff": float(np.max(list(self.worst.values()))),
            **per_output,
            "images_above_atol": self.above_atol,
            "float64_error_torch": self.torch_error,
            "float64_error_export": self.export_error,
            "passed": self.failed == 0,
        }


def _nms_result(images: int, matches: list[DetectionMatch]) -> dict[str, Any]:
    equal = all(match.equal for match in matches)
    return {
        "images": images,
        "faces": sum(match.expected for match in matches),
        "faces_onnx": sum(match.found for match in matches),
        "faces_paired": sum(match.paired for match in matches),
        "max_box_diff_px": max((match.max_box_diff_px for match in matches), default=0.0),
        "max_score_diff": max((match.max_score_diff for match in matches), default=0.0),
        "detections_equal": equal,
        "passed": equal,
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
    raw, scripted, matches = _RawTally(tolerances.atol), _RawTally(tolerances.atol), []
    float64 = Float64Runner(runners.torch.model)
    for image in inputs:
        batch = image[None]
        exact = functools.cache(lambda batch=batch: float64.predict(batch))
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
        matches.append(match_detections(wanted, found, tolerances))
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
