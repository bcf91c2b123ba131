"""The sections of the training stages: ``teacher``, ``distill`` (with the distillation
weights), ``prune``, ``finetune``, and ``launch`` (their processes).

Every section checks its ranges on construction (:mod:`.checks`), so a value a stage cannot run
with fails when ``params.yaml`` is loaded instead of deep inside the stage. Image sides need no
multiple of 32: the backbone, the BiFPN and the priors work on ``ceil(side / stride)`` cells."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Literal

from featherface.params.checks import FieldError, at_least, check_seed, positive, require


def _non_negative(value: float) -> bool:
    return value >= 0


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
        require(self, "alpha", _non_negative, "non-negative")
        require(self, "temperature", lambda value: value > 0, "positive")
        for name in ("w_cls", "w_box", "w_landm", "w_feat"):
            require(self, name, _non_negative, "non-negative")
        require(self, "confidence", lambda value: 0.0 <= value <= 1.0, "in [0, 1]")
        require(self, "mask_margin", _non_negative, "non-negative")

    @property
    def imitates_features(self) -> bool:
        """Whether ``kd_feat`` is used (``alpha > 0`` and ``w_feat > 0``)."""
        return self.alpha > 0 and self.w_feat > 0


def _increasing_epochs(milestones: tuple[int, ...]) -> bool:
    """Whether ``milestones`` are positive and strictly increasing (as
    :class:`featherface.engine.optim.ScheduleConfig` needs them)."""
    pairs = itertools.pairwise(milestones)
    return all(epoch > 0 for epoch in milestones) and all(a < b for a, b in pairs)


@dataclass(frozen=True)
class TrainParams:
    """``teacher``: one training run (architecture, data size, optimiser, schedule).

    Ranges: ``image_size >= 32``; ``batch_size``, ``epochs >= 1``; ``lr``, ``grad_clip_norm > 0``;
    ``weight_decay``, ``bn_recalibration_batches``, ``num_workers >= 0``; ``0 <= momentum < 1``;
    ``0 < warmup_fraction < 1`` and ``0 < gamma <= 1`` (checked whatever the schedule);
    ``milestones`` positive and strictly increasing; ``seed`` in ``[0, 2**32 - 1]``.
    """

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

    def __post_init__(self) -> None:
        at_least(self, 32, "image_size")
        at_least(self, 1, "batch_size", "epochs")
        positive(self, "lr")
        at_least(self, 0, "weight_decay")
        require(self, "momentum", lambda value: 0.0 <= value < 1.0, "in [0, 1)")
        require(self, "warmup_fraction", lambda value: 0.0 < value < 1.0, "in (0, 1)")
        require(self, "milestones", _increasing_epochs, "strictly increasing positive epochs")
        require(self, "gamma", lambda value: 0.0 < value <= 1.0, "in (0, 1]")
        positive(self, "grad_clip_norm")
        at_least(self, 0, "bn_recalibration_batches", "num_workers")
        check_seed(self)


@dataclass(frozen=True)
class DistillParams(TrainParams, DistillationWeights):
    """``distill``: the student's training run plus the distillation weights.

    The training keys mean what they mean under ``teacher``; the rest are the fields of
    :class:`DistillationWeights` (``alpha: 0`` trains on the ground truth alone, the ablation),
    checked as there.
    """

    arch: str = "featherface-nano-b"

    def __post_init__(self) -> None:
        TrainParams.__post_init__(self)
        DistillationWeights.__post_init__(self)

    def weights(self) -> DistillationWeights:
        """The distillation weights alone."""
        names = [f.name for f in dataclasses.fields(DistillationWeights)]
        return DistillationWeights(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class PruneParams:
    """``prune``: the B-FPGM search over per-layer-group FPGM rates (see
    :mod:`featherface.prune.search` for the objective).

    Ranges: ``rate``, ``tolerance``, ``max_rate`` in ``(0, 1)``; ``penalty >= 0``; ``n_calls``,
    ``channel_multiple``, ``trial_steps``, ``trial_images``, ``batch_size >= 1``;
    ``image_size >= 32``; ``lr > 0``; ``num_workers >= 0``; ``seed`` in ``[0, 2**32 - 1]`` (the
    search's ``gp_minimize`` seeds numpy's ``RandomState`` with it).
    """

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
        for name in ("rate", "tolerance", "max_rate"):
            require(self, name, lambda value: 0.0 < value < 1.0, "in (0, 1)")
        at_least(self, 0, "penalty")
        at_least(self, 1, "n_calls", "channel_multiple", "trial_steps", "trial_images")
        at_least(self, 32, "image_size")
        at_least(self, 1, "batch_size")
        positive(self, "lr")
        at_least(self, 0, "num_workers")
        check_seed(self)


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
        super().__post_init__()
        at_least(self, 0, "soft_epochs")
        at_least(self, 1, "mask_interval")


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
        at_least(self, 1, "nproc_per_node", "nnodes")
        if self.nnodes > 1 and ":" not in self.rdzv_endpoint:
            raise FieldError(
                "nnodes",
                f"{self.nnodes} needs rdzv_endpoint as host:port, got {self.rdzv_endpoint!r}",
            )
