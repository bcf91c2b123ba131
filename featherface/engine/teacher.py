"""The ``teacher`` stage: train a registered detector on the prepared data (MultiBox loss).

Files in the stage folder (``stages/teacher``):

- ``model.pt``: the weights of lowest validation loss, in this package's checkpoint format;
- ``metrics.json``: ``params_total``, ``params_paper``, ``val_loss`` and the WIDER-protocol
  ``ap_easy``/``ap_medium``/``ap_hard`` of ``model.pt`` on the validation split;
- ``val_detections.npz``: the detections those APs score, which the ``evaluate`` stage reuses
  (:mod:`featherface.evaluate.stored_detections`);
- ``history.csv``: one row per epoch (DVC plots);
- ``last.pt``, ``best.pt``, ``run_params.json``: the trainer's working files. ``last.pt`` lets an
  interrupted run resume where it stopped; it is discarded when the stage's parameters or the
  package's code changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from featherface.data.augment import EvalTransform, TrainAugmentation
from featherface.data.dataset import FaceDataset, make_loader
from featherface.data.prepare import PreparedData, load_prepared
from featherface.engine.callbacks import Callback, MLflowCallback, ProgressCallback
from featherface.engine.distributed import barrier, cleanup, init_distributed, seed_everything
from featherface.engine.losses import MultiBoxLoss
from featherface.engine.optim import OptimizerConfig, ScheduleConfig
from featherface.engine.trainer import DetectionLoss, LossFunction, Trainer
from featherface.evaluate.ground_truth import load_ground_truth
from featherface.evaluate.runtime import TorchRunner
from featherface.evaluate.stage import detect_split, image_keys, prediction_sets
from featherface.evaluate.stored_detections import FILE_NAME as STORED_DETECTIONS
from featherface.evaluate.stored_detections import detection_key, save_detections
from featherface.evaluate.wider_ap import evaluate
from featherface.models import build_model
from featherface.models.checkpoint import load_checkpoint, save_checkpoint
from featherface.models.complexity import params_paper, params_total
from featherface.params import EvaluateParams, ModelParams, TrainParams
from featherface.utils.atomic import copy_file, write_json
from featherface.utils.fingerprint import code_fingerprint, data_fingerprint

WORK_FILES = ("last.pt", "best.pt", "history.csv")


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
    parameters, code and (with ``prepare_dir``) prepared data; else delete them. The key is
    written to ``out_dir/run_params.json``. Inputs that are not parameters (a teacher or student
    checkpoint, a pruning plan) belong in ``run_params``."""
    marker = out_dir / "run_params.json"
    run_params = {**run_params, "code_sha256": code_fingerprint()}
    if prepare_dir is not None:
        run_params["data_sha256"] = data_fingerprint(prepare_dir)
    run_params = json.loads(json.dumps(run_params))  # tuples as lists, as read back
    if marker.is_file() and json.loads(marker.read_text()) == run_params:
        return
    for name in WORK_FILES:
        (out_dir / name).unlink(missing_ok=True)
    write_json(marker, run_params)


def validation_ap(
    model: torch.nn.Module,
    data: PreparedData,
    prepare_dir: Path,
    device: str | torch.device = "cpu",
    model_file: Path | None = None,
) -> dict[str, float]:
    """WIDER-protocol AP of ``model`` on the validation split (reference inference settings).

    With ``model_file`` (the file ``model`` was loaded from), the detections are also kept in
    ``val_detections.npz`` next to it, for the ``evaluate`` stage to reuse
    (:mod:`featherface.evaluate.stored_detections`).
    """
    settings = EvaluateParams()
    val = data.images[data.images["split"] == "val"]
    files = [data.image_path(row) for _, row in val.iterrows()]
    found = detect_split(TorchRunner(model, device), files, settings)
    keys = image_keys(val["path"])
    if model_file is not None:
        key = detection_key(model_file, prepare_dir, settings, device)
        save_detections(model_file.parent / STORED_DETECTIONS, key, keys, found)
    predictions = prediction_sets(keys, found)
    return evaluate(predictions, load_ground_truth(prepare_dir)).metrics()


def train_network(
    params: TrainParams,
    model: torch.nn.Module,
    loss_fn: LossFunction,
    prepare_dir: Path,
    out_dir: Path,
    run_params: dict[str, Any],
    mlflow: Any = None,
    show_progress: bool = True,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``loss_fn`` on the prepared data into ``out_dir/model.pt``.

    The shared body of the ``teacher`` and ``distill`` stages: loaders from ``params``, the
    trainer (resuming from ``last.pt`` when ``run_params`` match the interrupted run's), then
    ``model.pt`` (the weights of lowest validation loss) and ``metrics.json``. Under ``torchrun``
    every process trains its shard; rank 0 alone writes files and evaluates, and the other ranks
    return an empty dict. The device is CUDA (GPU ``LOCAL_RANK``) when available. Returns the
    metrics: ``params_total``, ``params_paper``, ``val_loss``, the validation APs and
    ``extra_metrics``.
    """
    context = init_distributed()
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        fresh_or_resumed(out_dir, run_params, prepare_dir)
    barrier()
    data = load_prepared(prepare_dir)
    loaders = training_loaders(params, data)
    optimizer, schedule = optimisation(params)
    callbacks: list[Callback] = [
        ProgressCallback(enabled=show_progress and context.is_main),
        MLflowCallback(mlflow),
    ]
    trainer = Trainer(
        model, loss_fn, loaders[0], out_dir, val_loader=loaders[1],
        optimizer=optimizer, schedule=schedule, epochs=params.epochs, amp=params.amp,
        grad_clip_norm=params.grad_clip_norm, callbacks=callbacks, seed=params.seed,
        context=context, bn_recalibration_batches=params.bn_recalibration_batches,
        channels_last=params.channels_last,
        model_saver=lambda network, path: save_checkpoint(path, params.arch, network),
    )  # fmt: skip
    history = trainer.fit()
    cleanup()
    if not context.is_main:
        return {}
    copy_file(out_dir / "best.pt", out_dir / "model.pt")
    best = load_checkpoint(out_dir / "model.pt").eval()
    metrics: dict[str, Any] = {
        "params_total": params_total(best),
        "params_paper": params_paper(best),
        "val_loss": min(row["val/loss"] for row in history),
        **validation_ap(best, data, prepare_dir, context.device, out_dir / "model.pt"),
        **(extra_metrics or {}),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def train_detector(
    params: TrainParams,
    model_params: ModelParams,
    prepare_dir: Path,
    out_dir: Path,
    mlflow: Any = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Stage ``teacher``: train ``params.arch`` on the MultiBox loss into ``out_dir/model.pt``;
    returns the metrics of ``metrics.json``."""
    seed_everything(params.seed)  # the initial weights depend on the seed alone
    model = build_model(params.arch, backbone_weights=model_params.backbone_weights)
    run_params = {"train": asdict(params), "model": asdict(model_params)}
    return train_network(
        params, model, DetectionLoss(MultiBoxLoss()), prepare_dir, out_dir, run_params, mlflow,
        show_progress,
    )  # fmt: skip
