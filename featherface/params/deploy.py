"""Post-processing settings and the ``export``, ``evaluate`` and ``tracking`` sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        for name in ("top_k", "keep_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

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
        if self.latency_runs < 0:
            raise ValueError(f"latency_runs must be 0 or more, got {self.latency_runs}")
        if self.opset < 17:
            raise ValueError(f"opset must be at least 17, got {self.opset}")
        if self.deform_conv == "native" and self.opset < 19:
            raise ValueError(f"deform_conv native needs opset 19 or more, got {self.opset}")
        if self.trace_size < 32:
            raise ValueError(f"trace_size must be at least 32, got {self.trace_size}")
        if self.parity_images < 1:
            raise ValueError(f"parity_images must be at least 1, got {self.parity_images}")
        if self.atol < 0 or self.box_atol_px < 0:
            raise ValueError("atol and box_atol_px must be 0 or more")


@dataclass(frozen=True)
class EvaluateParams(PostprocessSettings):
    """``evaluate``: how detections are produced for the WIDER FACE protocol; the
    post-processing keys are those of :class:`PostprocessSettings`."""

    mode: Literal["original", "resize", "multiscale"] = "original"
    size: int = 640
    scales: tuple[float, ...] = (0.5, 1.0, 1.5)
    flip: bool = True
    batch_size: int = 8


@dataclass(frozen=True)
class TrackingParams:
    """``tracking``: MLflow settings shared by every stage."""

    enabled: bool = True
    experiment: str = "featherface"
