"""Optimisers and learning-rate schedules of the training stages.

Every schedule is stepped once per training ITERATION, so the trainer has a single code path:

- ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` over ``epochs * steps_per_epoch``
  iterations; the lr rises from ``lr / div_factor`` to ``lr`` during the first ``pct_start`` of
  the run (cosine), then falls to ``lr / (div_factor * final_div_factor)``. The paper trains with
  AdamW at ``lr = 1e-3`` and this schedule.
- ``step``: the lr is multiplied by ``gamma`` at the start of each epoch listed in
  ``milestones``; the epochs are mapped to iterations (``epoch * steps_per_epoch``).

Weight decay applies to weight matrices and convolution kernels only: biases and normalisation
weights (every parameter with at most one dimension) are never decayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn
from torch.optim import SGD, AdamW, Optimizer
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR, OneCycleLR

OptimizerName = Literal["adamw", "sgd"]
ScheduleName = Literal["onecycle", "step"]


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser settings. ``momentum`` is used by SGD only, ``betas`` by AdamW only."""

    name: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise ValueError(f"optimizer name must be 'adamw' or 'sgd', got {self.name!r}")
        if self.lr <= 0:
            raise ValueError(f"optimizer lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must be two values in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule settings.

    ``onecycle`` uses ``pct_start`` (warm-up fraction of all iterations), ``div_factor`` (initial
    lr = lr / div_factor) and ``final_div_factor`` (final lr = initial lr / final_div_factor);
    ``step`` uses ``milestones`` (epochs, increasing) and ``gamma``.
    """

    name: ScheduleName = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in ("onecycle", "step"):
            raise ValueError(f"schedule name must be 'onecycle' or 'step', got {self.name!r}")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start}")
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise ValueError("div_factor and final_div_factor must be positive")
        if any(m <= 0 for m in self.milestones) or list(self.milestones) != sorted(
            set(self.milestones)
        ):
            raise ValueError(
                f"milestones must be strictly increasing positive epochs, got {self.milestones}"
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two groups of the trainable parameters: decayed (``ndim > 1``) and not decayed (biases,
    normalisation weights). Empty groups are left out."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return groups


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> Optimizer:
    """The optimiser of ``config`` over the trainable parameters of ``model``."""
    groups = parameter_groups(model, config.weight_decay)
    if config.name == "adamw":
        return AdamW(groups, lr=config.lr, betas=config.betas)
    return SGD(groups, lr=config.lr, momentum=config.momentum)


def build_scheduler(
    optimizer: Optimizer, config: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> LRScheduler:
    """The schedule of ``config``, to be stepped once per iteration.

    OneCycle's peak lr is the optimiser's lr (of each group); momentum and betas are left as the
    optimiser was configured (``cycle_momentum=False``).
    """
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch ({steps_per_epoch}) and epochs ({epochs}) must be > 0")
    if config.name == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=steps_per_epoch * epochs,
            pct_start=config.pct_start,
            div_factor=config.div_factor,
            final_div_factor=config.final_div_factor,
            cycle_momentum=False,
        )
    milestones = [epoch * steps_per_epoch for epoch in config.milestones]
    return MultiStepLR(optimizer, milestones=milestones, gamma=config.gamma)
