"""What ``featherface bench`` times: our detectors and a stand-in RetinaFace-mnet0.25.

A *subject* turns one square ``uint8[S, S, 3]`` BGR image into timed cases, one callable per
mode, each doing one full piece of work per call:

- ``"end_to_end"``: image -> network input (BGR minus the mean (104, 117, 123), ``float32[1, 3,
  S, S]``) -> network -> softmax, score threshold, sort, decode against the priors -> NMS, i.e.
  :func:`featherface.evaluate.inference.detect_image` in ``"original"`` mode;
- ``"network"``: the network alone, on an input prepared once.

Our model files are a ``.pt`` checkpoint of this package (PyTorch eager, through
:class:`~featherface.evaluate.runtime.TorchRunner`) or an ``.onnx`` file (ONNX Runtime on the
CPU through :class:`~featherface.evaluate.runtime.OnnxRunner` and its input/output contract).
PyTorch's thread count is set for a whole block by the caller; an ONNX Runtime session fixes its
``intra_op_num_threads`` when created, so an ONNX subject holds one session per thread count.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from featherface.data.transforms import to_network_input
from featherface.errors import FeatherFaceError
from featherface.evaluate.inference import detect_image
from featherface.evaluate.runtime import ONNX_INPUT, ONNX_OUTPUTS, OnnxRunner, Runner, TorchRunner
from featherface.models import build_model
from featherface.models.checkpoint import load_checkpoint
from featherface.models.convert import load_reference_checkpoint
from featherface.params import PostprocessSettings

END_TO_END = "end_to_end"
NETWORK = "network"
MODES: tuple[str, str] = (END_TO_END, NETWORK)
MODEL_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".onnx")
# Stand-in reference: this package's RetinaFace-mnet0.25, exported to ONNX for the run.
LOCAL_REFERENCE = "retinaface-local-onnx"
# Logits (background, face) of the silenced classifier of a random-weight reference.
SILENT_LOGITS: tuple[float, float] = (10.0, -10.0)

Timed = Callable[[], object]


@dataclass(frozen=True)
class Thresholds:
    """Post-processing of every subject: faces scoring ``> score_threshold``, NMS at
    ``nms_iou``."""

    score_threshold: float = 0.5
    nms_iou: float = 0.4


class Subject(Protocol):
    """A detector under test. ``info`` describes it in the JSON output (runtime, path, notes)."""

    label: str
    info: dict[str, Any]

    def cases(self, bgr: np.ndarray, threads: int, stack: ExitStack) -> dict[str, Timed]:
        """Timed callables by mode for the ``uint8[S, S, 3]`` BGR image at ``threads`` threads;
        contexts that must stay open while they run (thread limits) go on ``stack``."""
        ...


def check_model_file(label: str, path: Path) -> None:
    """Refuse, with a one-line error, a model file that is missing or of an unknown type."""
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise FeatherFaceError(
            f"{path}: unknown model file type of {label!r} (expected .pt, .pth or .onnx)"
        )
    if not path.is_file():
        raise FeatherFaceError(f"{path}: model file of {label!r} not found")


class RunnerSubject:
    """One of our model files: a ``.pt``/``.pth`` checkpoint or an ``.onnx`` export.

    Everything is loaded when the subject is made (one ONNX Runtime session per count in
    ``threads``), so a bad file fails before any timing starts.
    """

    def __init__(
        self, label: str, path: Path, threads: Sequence[int], thresholds: Thresholds
    ) -> None:
        check_model_file(label, path)
        self.label = label
        self.thresholds = thresholds
        try:
            self._postprocess = PostprocessSettings(
                score_threshold=thresholds.score_threshold, nms_iou=thresholds.nms_iou
            )
        except ValueError as error:
            raise FeatherFaceError(f"{label}: {error}") from None
        self._onnx = path.suffix.lower() == ".onnx"
        self._runners: dict[int, Runner] = {}
        if self._onnx:
            self._runners = {count: OnnxRunner(path, threads=count) for count in threads}
        else:
            self._torch = TorchRunner(load_checkpoint(path))
        self.info: dict[str, Any] = {
            "runtime": "onnxruntime" if self._onnx else "pytorch",
            "path": str(path),
        }

    def cases(self, bgr: np.ndarray, threads: int, stack: ExitStack) -> dict[str, Timed]:
        """See :class:`Subject`; PyTorch's threads are the caller's (``torch.set_num_threads``)."""
        runner = self._runners[threads] if self._onnx else self._torch
        rgb = bgr[:, :, ::-1]  # a view: to_network_input reverses it back to BGR
        batch = to_network_input(rgb)[None]
        postprocess = self._postprocess
        return {
            END_TO_END: lambda: detect_image(runner, rgb, "original", postprocess=postprocess),
            NETWORK: lambda: runner.predict(batch),
        }


def reference_network(weights: Path | None = None) -> nn.Module:
    """The registry's ``retinaface-mnet025`` (RetinaFace-MobileNet0.25), in eval mode.

    ``weights``: trained weights in the original code's key layout (such as
    ``mobilenet0.25_Final.pth``), converted by
    :func:`~featherface.models.convert.load_reference_checkpoint`. Without them the weights are
    random, which costs the network the same, but random face scores would send
    about half of the anchors through decoding and NMS; so the face classifier is silenced (zero
    weights, logits :data:`SILENT_LOGITS` for every anchor): like a trained detector on a frame
    without faces, no anchor passes a threshold below ``softmax(SILENT_LOGITS)[0] ~ 1``.
    """
    if weights is not None:
        return load_reference_checkpoint("retinaface-mnet025", weights).eval()
    model = build_model("retinaface-mnet025").eval()
    with torch.no_grad():
        for conv in model.head.cls:
            conv.weight.zero_()
            conv.bias.view(-1, 2).copy_(torch.tensor(SILENT_LOGITS))
    return model


def export_local_reference(folder: Path, weights: Path | None = None) -> Path:
    """Export :func:`reference_network` to ``folder/retinaface-mnet025.onnx``.

    The graph follows the runtime contract: input ``images`` ``float32[B, 3, H, W]`` with
    ``B``, ``H`` and ``W`` dynamic, outputs ``loc``, ``conf`` (logits), ``landm``; opset 17,
    TorchScript-based exporter.
    """
    model = reference_network(weights)
    path = folder / "retinaface-mnet025.onnx"
    anchors = {0: "batch", 1: "anchors"}
    dynamic_axes = {ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}}
    dynamic_axes.update({name: anchors for name in ONNX_OUTPUTS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 320, 320),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=dynamic_axes,
        )
    return path


def local_reference(
    folder: Path, threads: Sequence[int], thresholds: Thresholds, weights: Path | None = None
) -> RunnerSubject:
    """The stand-in reference: :func:`export_local_reference` in ``folder``, run like our ONNX
    files (our pre- and post-processing)."""
    path = export_local_reference(folder, weights)
    subject = RunnerSubject(LOCAL_REFERENCE, path, threads, thresholds)
    described = f"weights {weights}" if weights else "random weights, face classifier silenced"
    subject.info = {
        "runtime": "onnxruntime",
        "path": None,
        "note": f"this package's retinaface-mnet025 ({described}), exported to ONNX for this "
        "run; our pre- and post-processing",
    }
    return subject
