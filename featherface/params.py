"""Typed access to ``params.yaml``: one frozen dataclass per section, unknown keys rejected.

Stages read only their own sections. A key that is missing takes the dataclass default; a key
that is unknown or of the wrong type is a :class:`~featherface.errors.ParamsError` naming the file
and the dotted key, so a typo in ``dvc exp run -S data.synthetc.seed=1`` fails instead of being
ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from featherface.errors import ParamsError


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the synthetic images; equal configs give byte-identical files.

    Image sides are drawn uniformly (integers) in ``[min_image_size, max_image_size]``, width and
    height independently. Each image plans ``min_faces..max_faces`` faces whose box heights are
    log-uniform in ``[min_face_height, max_face_height]`` px (at most 0.8 of the shorter side);
    a face that finds no free spot shrinks and is dropped below ``min_face_height``, so a crowded
    image may hold fewer. Up to ``distractors_max`` face-like skin ellipses without features are
    hard negatives. ``glasses_prob``, ``occlusion_prob`` and ``blur_prob`` are per-face
    probabilities of glasses, an occluder and a face blur (a whole-image blur has probability
    ``blur_prob / 2``); in-plane rotations lie in ``[-rotation_max_deg, rotation_max_deg]``.
    ``workers`` is the number of processes and never changes the output.
    """

    seed: int = 0
    num_train: int = 800
    num_val: int = 200
    min_image_size: int = 320
    max_image_size: int = 1024
    min_faces: int = 1
    max_faces: int = 30
    min_face_height: float = 8.0
    max_face_height: float = 300.0
    distractors_max: int = 6
    glasses_prob: float = 0.2
    occlusion_prob: float = 0.25
    blur_prob: float = 0.3
    rotation_max_deg: float = 30.0
    jpeg_quality: int = 90
    workers: int = 2

    def __post_init__(self) -> None:
        """Reject values that cannot produce a valid image (raises :class:`ParamsError`)."""
        for item in fields(self):
            value = getattr(self, item.name)
            expected = int if item.type == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ParamsError(f"synthetic.{item.name} must be {item.type}, got {value!r}")
        _check_synthetic(self.seed >= 0, "seed must be >= 0")
        _check_synthetic(
            self.num_train >= 0 and self.num_val >= 0, "num_train and num_val must be >= 0"
        )
        _check_synthetic(
            16 <= self.min_image_size <= self.max_image_size,
            "need 16 <= min_image_size <= max_image_size",
        )
        _check_synthetic(1 <= self.min_faces <= self.max_faces, "need 1 <= min_faces <= max_faces")
        _check_synthetic(
            2.0 <= self.min_face_height <= self.max_face_height,
            "need 2 <= min_face_height <= max_face_height",
        )
        _check_synthetic(
            self.min_face_height <= 0.8 * self.min_image_size,
            "min_face_height must be at most 0.8 * min_image_size",
        )
        _check_synthetic(self.distractors_max >= 0, "distractors_max must be >= 0")
        for name in ("glasses_prob", "occlusion_prob", "blur_prob"):
            _check_synthetic(0.0 <= getattr(self, name) <= 1.0, f"{name} must lie in [0, 1]")
        _check_synthetic(
            0.0 <= self.rotation_max_deg <= 90.0, "rotation_max_deg must lie in [0, 90]"
        )
        _check_synthetic(1 <= self.jpeg_quality <= 95, "jpeg_quality must lie in [1, 95]")
        _check_synthetic(self.workers >= 1, "workers must be >= 1")

    def num_images(self, split: str) -> int:
        """The number of images of ``split`` ("train" or "val")."""
        if split == "train":
            return self.num_train
        if split == "val":
            return self.num_val
        raise ParamsError(f"unknown split {split!r}; expected 'train' or 'val'")


def _check_synthetic(condition: bool, problem: str) -> None:
    if not condition:
        raise ParamsError(f"synthetic: {problem}")


@dataclass(frozen=True)
class DistillationWeights:
    """Weights of the distillation terms (the total is in :mod:`featherface.engine.distill_loss`).

    alpha: weight of all distillation against the ground truth (0 disables the teacher);
    temperature: softmax temperature ``T`` of the classification term; w_cls, w_box, w_landm,
    w_feat: weights of ``kd_cls``, ``kd_box``, ``kd_landm``, ``kd_feat`` inside the distillation
    sum; confidence: teacher face probability at or above which an anchor takes part in box and
    landmark distillation; mask_margin: how far the feature-imitation mask reaches around each
    ground-truth face, as a fraction of the face's width (left and right) and height (top and
    bottom): 0 marks the cells the box overlaps, 0.5 those of a box twice as wide and high.
    """

    alpha: float = 1.0
    temperature: float = 4.0
    w_cls: float = 1.0
    w_box: float = 1.0
    w_landm: float = 1.0
    w_feat: float = 1.0
    confidence: float = 0.5
    mask_margin: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        for name in ("alpha", "w_cls", "w_box", "w_landm", "w_feat", "mask_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @property
    def imitates_features(self) -> bool:
        """Whether ``kd_feat`` is used (``alpha > 0`` and ``w_feat > 0``)."""
        return self.alpha > 0 and self.w_feat > 0


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
class DataParams:
    """``data``: where the images come from and how strictly they are checked."""

    source: Literal["synthetic", "widerface"] = "synthetic"
    widerface_root: str = "data/widerface"
    on_bad_rows: Literal["fail", "drop"] = "fail"
    box_tolerance_px: float = 2.0
    landmark_tolerance: float = 0.5
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class ModelParams:
    """``model``: what every training stage builds on."""

    backbone_weights: str | None = None


@dataclass(frozen=True)
class TrainParams:
    """``teacher``: one training run (architecture, data size, optimiser, schedule)."""

    arch: str = "featherface-v1"
    image_size: int = 256
    batch_size: int = 8
    epochs: int = 4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: Literal["onecycle", "step"] = "onecycle"
    warmup_fraction: float = 0.2
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    grad_clip_norm: float = 10.0
    bn_recalibration_batches: int = 20
    channels_last: bool = True
    num_workers: int = 2
    amp: bool = True
    seed: int = 0


@dataclass(frozen=True)
class DistillParams(TrainParams, DistillationWeights):
    """``distill``: the student's training run plus the distillation weights.

    The training keys mean what they mean under ``teacher``; the rest are the fields of
    :class:`DistillationWeights` (``alpha: 0`` trains on the ground truth alone, the ablation),
    checked as there.
    """

    arch: str = "featherface-nano-b"

    def weights(self) -> DistillationWeights:
        """The distillation weights alone."""
        names = [f.name for f in dataclasses.fields(DistillationWeights)]
        return DistillationWeights(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class PruneParams:
    """``prune``: the B-FPGM search over per-layer-group FPGM rates (see
    :mod:`featherface.prune.search` for the objective)."""

    rate: float = 0.6
    tolerance: float = 0.03
    n_calls: int = 8
    max_rate: float = 0.9
    penalty: float = 10.0
    channel_multiple: int = 1
    trial_steps: int = 8
    trial_images: int = 48
    image_size: int = 256
    batch_size: int = 8
    lr: float = 1e-3
    num_workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")
        if not 0.0 < self.max_rate < 1.0:
            raise ValueError(f"max_rate must be in (0, 1), got {self.max_rate}")
        names = ("n_calls", "channel_multiple", "trial_steps", "trial_images")
        for name in (*names, "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class FinetuneParams(TrainParams):
    """``finetune``: soft filter pruning at the found rates for ``soft_epochs``, physical
    removal, then ``epochs`` of ordinary training of the smaller network. The training keys mean
    what they mean under ``teacher``; ``arch`` is the student's. ``mask_interval``: epochs
    between two zeroings of the pruned filters during soft pruning."""

    arch: str = "featherface-nano-b"
    soft_epochs: int = 1
    mask_interval: int = 1
    epochs: int = 2
    lr: float = 1e-3
    bn_recalibration_batches: int = 10

    def __post_init__(self) -> None:
        if self.soft_epochs < 0:
            raise ValueError(f"soft_epochs must be 0 or more, got {self.soft_epochs}")
        if self.mask_interval < 1:
            raise ValueError(f"mask_interval must be at least 1, got {self.mask_interval}")


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


@dataclass(frozen=True)
class LaunchParams:
    """``launch``: processes of the training stages (teacher, distill, finetune). More than one
    process per node, or more than one node, re-runs the stage under ``torchrun``
    (:mod:`featherface.engine.launch`); ``rdzv_endpoint`` (``host:port`` on node 0) is where the
    nodes of a multi-node job meet."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = ""

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ValueError(
                f"nproc_per_node and nnodes must be at least 1, got {self.nproc_per_node} "
                f"and {self.nnodes}"
            )
        if self.nnodes > 1 and ":" not in self.rdzv_endpoint:
            raise ValueError(
                f"nnodes {self.nnodes} needs rdzv_endpoint as host:port, got {self.rdzv_endpoint!r}"
            )


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``."""

    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    launch: LaunchParams = field(default_factory=LaunchParams)
    teacher: TrainParams = field(default_factory=TrainParams)
    distill: DistillParams = field(default_factory=DistillParams)
    prune: PruneParams = field(default_factory=PruneParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    export: ExportParams = field(default_factory=ExportParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


def _check_value(value: Any, hint: Any, key: str, source: Path) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ParamsError(
                f"{source}: {key} must be one of {typing.get_args(hint)}, got {value!r}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{source}: {key} must be a list, got {value!r}")
        (item,) = {arg for arg in typing.get_args(hint) if arg is not Ellipsis}
        return tuple(_check_value(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ParamsError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    return value


def build(cls: type, mapping: Any, source: Path, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``mapping``, rejecting unknown keys and wrong types."""
    where = prefix or "top level"
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ParamsError(f"{source}: {where} must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        dotted = [f"{prefix}.{key}" if prefix else str(key) for key in unknown]
        raise ParamsError(f"{source}: unknown key(s) {dotted}; known: {sorted(names)}")
    values = {
        name: _check_value(value, hints[name], f"{prefix}.{name}" if prefix else name, source)
        for name, value in mapping.items()
    }
    try:
        return cls(**values)
    except (TypeError, ValueError, ParamsError) as error:
        raise ParamsError(f"{source}: {where}: {error}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml``."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})"
        ) from None
    return build(Params, content, path)


def section_dict(section: Any) -> dict[str, Any]:
    """A section as a plain nested dict (for logging to MLflow and hashing)."""
    return dataclasses.asdict(section)
