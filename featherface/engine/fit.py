"""The training body shared by the ``teacher``, ``distill`` and ``finetune`` stages.

:func:`train_network` builds the loaders of a stage's training parameters, runs the
:class:`~featherface.engine.trainer.Trainer` (resuming an interrupted run), and leaves in the
output folder:

- ``model.pt``: the weights of lowest validation loss, in this package's checkpoint format;
- ``history.csv``: one row per epoch (DVC plots);
- ``last.pt``, ``best.pt``, ``run_params.json``: the trainer's working files. ``last.pt`` lets an
  interrupted run resume where it stopped; :func:`fresh_or_resumed` discards it when the run's
  key (parameters, code, data) changed.

Scoring the model (validation AP) and writing ``metrics.json`` are the stage's business.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from featherface.data.augment import EvalTransform, TrainAugmentation
from featherface.data.dataset import FaceDataset, make_loader
from featherface.data.prepare import PreparedData, load_prepared
from featherface.engine.callbacks import Callback, MetricsLogger, MetricsSink, ProgressCallback
from featherface.engine.distributed import barrier, cleanup, init_distributed
from featherface.engine.optim import OptimizerConfig, ScheduleConfig
from featherface.engine.trainer import LossFunction, Trainer
from featherface.models.checkpoint import load_checkpoint, save_checkpoint
from featherface.models.complexity import params_paper, params_total
from featherface.params import TrainParams
from featherface.utils.atomic import copy_file, write_json
from featherface.utils.fingerprint import data_fingerprint

WORK_FILES = ("last.pt", "best.pt", "history.csv")


@dataclass
class FitResult:
    """What :func:`train_network` gives the stage on rank 0: the best network (eval mode), its
    ``params_total``, ``params_paper`` and lowest ``val_loss``, and the training device."""

    model: torch.nn.Module
    metrics: dict[str, Any]
    device: torch.device


def optimisation(params: TrainParams) -> tuple[OptimizerConfig, ScheduleConfig]:
    """The trainer's optimiser and schedule configurations from the stage parameters."""
    optimizer = OptimizerConfig(
        name=params.optimizer, lr=params.lr, weight_decay=params.weight_decay,
        momentum=params.momentum,
    )  # fmt: skip
    schedule = ScheduleConfig(
        name=params.schedule, pct_start=params.warmup_fraction, milestones=params.milestones,
        gamma=params.gamma,
    )  # fmt: skip
    return optimizer, schedule


def training_loaders(params: TrainParams, data: PreparedData) -> tuple[DataLoader, DataLoader]:
    """``(train, val)`` loaders of a training stage: augmented ``params.image_size`` crops of the
    training split (shuffled, last partial batch dropped) and the validation split at the same
    size, ``params.batch_size`` images per batch."""
    train = FaceDataset(data, "train", TrainAugmentation(params.image_size), params.seed)
    val = FaceDataset(data, "val", EvalTransform(params.image_size), params.seed)
    return (
        make_loader(train, params.batch_size, True, params.num_workers, params.seed, True),
        make_loader(val, params.batch_size, False, params.num_workers, params.seed),
    )


def fresh_or_resumed(
    out_dir: Path, run_params: dict[str, Any], prepare_dir: Path | None = None
) -> None:
    """Keep the trainer's working files in ``out_dir`` only if they come from the same
    ``run_params`` and (with ``prepare_dir``) prepared data; else delete them. The key is written
    to ``out_dir/run_params.json``. Everything that is not a parameter but changes the result (a
    teacher or student checkpoint, a pruning plan, the fingerprint of the stage's code) belongs
    in ``run_params``."""
    marker = out_dir / "run_params.json"
    if prepare_dir is not None:
        run_params = {**run_params, "data_sha256": data_fingerprint(prepare_dir)}
    run_params = json.loads(json.dumps(run_params))  # tuples as lists, as read back
    if marker.is_file() and json.loads(marker.read_text()) == run_params:
        return
    for name in WORK_FILES:
        (out_dir / name).unlink(missing_ok=True)
    write_json(marker, run_params)


def train_network(
    params: TrainParams,
    model: torch.nn.Module,
    loss_fn: LossFunction,
    prepare_dir: Path,
    out_dir: Path,
    run_params: dict[str, Any],
    log_metrics: MetricsSink | None = None,
    show_progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> FitResult | None:
    """Train ``model`` with ``loss_fn`` on the prepared data into ``out_dir/model.pt``.

    Loaders from ``params``, the trainer (resuming from ``last.pt`` when ``run_params`` match the
    interrupted run's), then ``model.pt``, the weights of lowest validation loss. Every epoch's
    metrics go to ``log_metrics(metrics, epoch)``. Under ``torchrun`` every process trains its
    shard; rank 0 alone writes files and gets the :class:`FitResult`, the other ranks ``None``.
    The device is CUDA (GPU ``LOCAL_RANK``) when available.
    """
    context = init_distributed()
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        fresh_or_resumed(out_dir, run_params, prepare_dir)
    barrier()
    loaders = training_loaders(params, load_prepared(prepare_dir))
    optimizer, schedule = optimisation(params)
    hooks: list[Callback] = [ProgressCallback(enabled=show_progress and context.is_main)]
    if log_metrics is not None:
        hooks.append(MetricsLogger(log_metrics))
    trainer = Trainer(
        model, loss_fn, loaders[0], out_dir, val_loader=loaders[1],
        optimizer=optimizer, schedule=schedule, epochs=params.epochs, amp=params.amp,
        grad_clip_norm=params.grad_clip_norm, callbacks=[*hooks, *callbacks], seed=params.seed,
        context=context, bn_recalibration_batches=params.bn_recalibration_batches,
        channels_last=params.channels_last,
        model_saver=lambda network, path: save_checkpoint(path, params.arch, network),
    )  # fmt: skip
    history = trainer.fit()
    cleanup()
    if not context.is_main:
        return None
    copy_file(out_dir / "best.pt", out_dir / "model.pt")
    best = load_checkpoint(out_dir / "model.pt").eval()
    metrics: dict[str, Any] = {
        "params_total": params_total(best),
        "params_paper": params_paper(best),
        "val_loss": min(row["val/loss"] for row in history),
    }
    return FitResult(best, metrics, context.device)
