"""The sections of the training stages: ``teacher``, ``distill`` (with the distillation
weights), ``prune``, ``finetune``, and ``launch`` (their processes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


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
