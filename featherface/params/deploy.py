"""Post-processing settings and the ``export``, ``evaluate`` and ``tracking`` sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from featherface.params.checks import FieldError, at_least, require


@dataclass(frozen=True)
class PostprocessSettings:
    """Selection of detections from a detector's candidates (the one place these defaults live).

    Per network pass, faces scoring ``> score_threshold`` are sorted and the ``top_k`` best kept;
    then non-maximum suppression at IoU ``nms_iou`` (+1 pixel convention), and the ``keep_k``
    best remain. The defaults are the reference RetinaFace test script's. Used by
    :mod:`featherface.evaluate.inference`, the ONNX post-processing graph
    (:mod:`featherface.export.graph_postprocess`) and, through the sections that inherit it,
    ``evaluate`` and ``export``.
    """

    score_threshold: float = 0.02
    nms_iou: float = 0.4
    top_k: int = 5000
    keep_k: int = 750

    def __post_init__(self) -> None:
        require(self, "score_threshold", lambda value: 0.0 <= value < 1.0, "in [0, 1)")
        require(self, "nms_iou", lambda value: 0.0 <= value <= 1.0, "in [0, 1]")
        at_least(self, 1, "top_k", "keep_k")

    def postprocess(self) -> PostprocessSettings:
        """The four post-processing values alone, as a plain :class:`PostprocessSettings`."""
        return PostprocessSettings(self.score_threshold, self.nms_iou, self.top_k, self.keep_k)


@dataclass(frozen=True)
class ExportParams(PostprocessSettings):
    """``export``: ONNX and TorchScript files of the final models, and their parity checks.

    ``score_threshold``, ``nms_iou``, ``top_k`` and ``keep_k`` (:class:`PostprocessSettings`)
    are baked into the ONNX graphs with post-processing; they mean what they mean under
    ``evaluate``. ``deform_conv``: how deformable convolutions are written, ``native`` (the ONNX
    ``DeformConv`` operator, opset 19 or more) or ``gather`` (gathers, multiplies and sums of
    standard operators, any opset). ``latency_runs``: timed rounds of
    :mod:`featherface.export.latency` (0: not measured).
    """

    opset: int = 19
    deform_conv: Literal["native", "gather"] = "native"
    trace_size: int = 320
    parity_images: int = 8
    atol: float = 1e-4
    box_atol_px: float = 0.01
    latency_runs: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 17, "opset")
        if self.deform_conv == "native" and self.opset < 19:
            raise FieldError("deform_conv", f"native needs opset 19 or more, got {self.opset}")
        at_least(self, 32, "trace_size")
        at_least(self, 1, "parity_images")
        at_least(self, 0, "atol", "box_atol_px", "latency_runs")


@dataclass(frozen=True)
class EvaluateParams(PostprocessSettings):
    """``evaluate``: how detections are produced for the WIDER FACE protocol; the
    post-processing keys are those of :class:`PostprocessSettings`. Ranges (whatever the
    ``mode``): ``size >= 32``; ``scales`` non-empty, each ``> 0``; ``batch_size >= 1``."""

    mode: Literal["original", "resize", "multiscale"] = "original"
    size: int = 640
    scales: tuple[float, ...] = (0.5, 1.0, 1.5)
    flip: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 32, "size")
        require(self, "scales", _positive_numbers, "a non-empty list of numbers > 0")
        at_least(self, 1, "batch_size")


def _positive_numbers(values: tuple[float, ...]) -> bool:
    return len(values) > 0 and all(value > 0 for value in values)


@dataclass(frozen=True)
class TrackingParams:
    """``tracking``: MLflow settings shared by every stage."""

    enabled: bool = True
    experiment: str = "featherface"
