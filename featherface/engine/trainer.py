"""One trainer for every training stage (teacher, distillation, fine-tuning).

Small overridable steps (:meth:`Trainer.train_step`, :meth:`Trainer.validate`,
:meth:`Trainer.save_state`, :meth:`Trainer.load_state`, :meth:`Trainer.save_model`) and named
callbacks (:mod:`featherface.engine.callbacks`). The loss is injected: any callable
``(outputs, targets, images) -> dict[str, Tensor]`` returning ``"total"`` (minimised) plus named
terms, e.g. :class:`~featherface.engine.losses.DetectionLoss` or a composite distillation loss.

Files in ``out_dir``, written by rank 0 only, each atomically (temporary file, then rename):

- ``last.pt`` after every epoch: model, optimiser, scheduler and grad-scaler states, epoch, best
  monitored loss, history and every rank's RNG states, as plain tensors and containers
  (``torch.load(weights_only=True)`` reads it). If it exists when :meth:`Trainer.fit` starts,
  training resumes at the next epoch and, on CPU, ends with exactly the weights of an
  uninterrupted run: the data order depends only on ``(seed, epoch)``. Rank 0 then hands the
  callbacks' ``on_resume`` one line (:func:`resume_message`), which the progress bar prints.
- ``best.pt``: the weights of lowest ``val/loss`` (``train/loss`` without a validation loader).
- ``history.csv``: one row per epoch: ``epoch``, ``train/loss`` (the total), ``train/<term>`` per
  named term (``train/loss_loc``, ...), the same for ``val/``, ``lr``, ``images_per_s``.

With ``bn_recalibration_batches = N > 0`` every epoch ends by re-estimating the BatchNorm
statistics on the first ``N`` batches of that epoch's data order (precise BN, see
:mod:`featherface.engine.batchnorm`), so validation and the saved weights use statistics of the
final weights. ``channels_last`` trains in the NHWC memory layout (same results, faster
convolutions on CPU and under AMP on GPU).

A loss that is an ``nn.Module`` is moved to the device, switched between train and eval with the
model, optimised with it (its trainable parameters, e.g. distillation adapters) and checkpointed.
Epochs are 0-based. Under ``torchrun`` the model is wrapped in DistributedDataParallel (the loss's
gradients are averaged by hand; rank 0's buffers, e.g. BatchNorm statistics, are copied to every
rank after each epoch), epoch metrics are averaged over ranks and every rank loads ``last.pt`` on
resume.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from featherface.engine.batchnorm import recalibrate_batchnorm
from featherface.engine.callbacks import Callback
from featherface.engine.distributed import (
    DistributedContext,
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_tensors,
    current_context,
    gather_objects,
    rng_state,
    seed_everything,
    set_rng_state,
    unwrap_model,
    wrap_ddp,
)
from featherface.engine.optim import (
    OptimizerConfig,
    ScheduleConfig,
    build_optimizer,
    build_scheduler,
)
from featherface.engine.tensors import map_tensors, with_memory_format
from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import read_weights_file
from featherface.utils.atomic import save_torch as atomic_save
from featherface.utils.atomic import write_text

LossFunction = Callable[[Any, Sequence[Mapping[str, Tensor]], Tensor], dict[str, Tensor]]
ModelSaver = Callable[[nn.Module, Path], None]
CHECKPOINT_FORMAT = 1


def metric_name(split: str, term: str) -> str:
    """``<split>/loss`` for the total, ``<split>/<term>`` for a named term."""
    return f"{split}/loss" if term == "total" else f"{split}/{term}"


def resume_message(path: Path, done: int, epochs: int) -> str:
    """The line that says a run resumes from ``path`` after ``done`` of ``epochs`` epochs
    (1-based): ``resuming from out/last.pt: epochs 1-2 done, continuing at epoch 3 of 4``, or
    ``resuming from out/last.pt: all 4 epochs done; nothing to train``."""
    if done >= epochs:
        finished = f"all {epochs} epochs done" if epochs > 1 else "epoch 1 of 1 done"
        return f"resuming from {path}: {finished}; nothing to train"
    trained = "epoch 1 done" if done == 1 else f"epochs 1-{done} done"
    return f"resuming from {path}: {trained}, continuing at epoch {done + 1} of {epochs}"


class Trainer:
    """Train ``model`` with ``loss_fn`` for ``epochs`` epochs, writing into ``out_dir``.

    ``amp`` enables float16 autocast and gradient scaling on CUDA only; ``grad_clip_norm`` clips
    the global gradient norm; ``seed`` seeds every RNG at the start of a fresh run and the train
    loader's generator with ``seed + epoch`` each epoch. ``context`` describes the process group
    (by default read from ``torch.distributed``; its device then wins over ``device``);
    ``model_saver(model, path)`` writes ``best.pt`` (by default the bare ``state_dict``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        train_loader: DataLoader,
        out_dir: Path,
        val_loader: DataLoader | None = None,
        optimizer: OptimizerConfig | None = None,
        schedule: ScheduleConfig | None = None,
        epochs: int = 1,
        device: str | torch.device = "cpu",
        amp: bool = False,
        grad_clip_norm: float | None = None,
        callbacks: Sequence[Callback] = (),
        seed: int = 0,
        context: DistributedContext | None = None,
        model_saver: ModelSaver | None = None,
        bn_recalibration_batches: int = 0,
        channels_last: bool = False,
    ) -> None:
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be positive, got {grad_clip_norm}")
        self.context = context or current_context(device)
        self.device = self.context.device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = wrap_ddp(with_memory_format(model, self.memory_format), self.context)
        self.loss_fn = loss_fn
        self.loss_module = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else None
        if self.loss_module is not None:
            broadcast_tensors([*self.loss_module.parameters(), *self.loss_module.buffers()])
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.epochs = epochs
        self.out_dir = Path(out_dir)
        self.last_path = self.out_dir / "last.pt"
        self.best_path = self.out_dir / "best.pt"
        self.history_path = self.out_dir / "history.csv"
        self.grad_clip_norm = grad_clip_norm
        self.callbacks = list(callbacks)
        self.seed = seed
        self.model_saver = model_saver
        self.bn_recalibration_batches = bn_recalibration_batches
        self.steps_per_epoch = len(train_loader)
        self.optimizer, self.scheduler = self.build_optimization(optimizer, schedule)
        self.trained_parameters = [
            p for group in self.optimizer.param_groups for p in group["params"]
        ]
        self.amp = amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.history: list[dict[str, float]] = []
        self.best_loss = math.inf
        self.global_step = 0
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.last_grad_norm: Tensor | None = None

    @property
    def network(self) -> nn.Module:
        """The model being trained, without its DistributedDataParallel wrapper."""
        return unwrap_model(self.model)

    def build_optimization(
        self, optimizer: OptimizerConfig | None, schedule: ScheduleConfig | None
    ) -> tuple[Optimizer, LRScheduler]:
        """The optimiser over the model and the loss's trainable parameters, and its schedule."""
        trained = self.network
        if self.loss_module is not None:
            trained = nn.ModuleList([self.network, self.loss_module])
        built = build_optimizer(trained, optimizer or OptimizerConfig())
        config = schedule or ScheduleConfig()
        return built, build_scheduler(built, config, self.steps_per_epoch, self.epochs)

    def set_train_mode(self, mode: bool) -> None:
        """Train (``True``) or eval mode for the model and a module loss."""
        self.model.train(mode)
        if self.loss_module is not None:
            self.loss_module.train(mode)

    def fit(self) -> list[dict[str, float]]:
        """Train (or resume) to ``epochs`` epochs; returns the history, one dict per epoch."""
        start = self.load_state() if self.last_path.is_file() else 0
        if start == 0:
            seed_everything(self.seed)
        elif self.context.is_main:
            self._run_callbacks("on_resume", resume_message(self.last_path, start, self.epochs))
        self._run_callbacks("on_fit_start", self)
        try:
            for epoch in range(start, self.epochs):
                self._run_callbacks("on_epoch_start", epoch)
                metrics = self.fit_epoch(epoch)
                self._run_callbacks("on_epoch_end", epoch, metrics)
        finally:
            self._run_callbacks("on_fit_end")
        if self.context.is_main and start == self.epochs:  # nothing left to train: the history
            self.write_history()  # file may be gone (DVC removes outputs before a stage runs)
        return self.history

    def fit_epoch(self, epoch: int) -> dict[str, float]:
        """Train, validate, keep the best weights and checkpoint one epoch; returns its metrics."""
        train = self.train_epoch(epoch)
        rates = {name: train.pop(name) for name in ("lr", "images_per_s")}
        val = self.validate()
        metrics: dict[str, float] = {"epoch": epoch, **train, **val, **rates}
        self.history.append(metrics)
        monitored = metrics.get("val/loss", metrics["train/loss"])
        if monitored < self.best_loss:
            self.best_loss = monitored
            if self.context.is_main:
                self.save_model(self.best_path)
        rng = gather_objects(rng_state())
        if self.context.is_main:
            self.save_state(epoch, rng)
            self.write_history()
        barrier()
        return metrics

    def set_epoch(self, epoch: int) -> None:
        """Make the data order of ``epoch`` a function of ``(seed, epoch)``: ``set_epoch`` on the
        dataset and sampler when they have it; the loader's generator seeded ``seed + epoch``."""
        loader = self.train_loader
        sampler = getattr(loader, "sampler", None)
        dataset = getattr(loader, "dataset", None)
        for component in (dataset, sampler, getattr(loader, "batch_sampler", None)):
            if hasattr(component, "set_epoch"):
                component.set_epoch(epoch)
        candidates = (getattr(loader, "generator", None), getattr(sampler, "generator", None))
        generators = {id(g): g for g in candidates}
        for generator in generators.values():
            if generator is not None:
                generator.manual_seed(self.seed + epoch)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the train loader; returns ``train/*`` means, ``lr``, ``images_per_s``."""
        self.set_epoch(epoch)
        self.set_train_mode(True)
        sums: dict[str, Tensor] = {}
        images_seen = batches = 0
        start = time.perf_counter()
        for batch in self.train_loader:
            terms = self.train_step(batch)
            batches += 1
            for name, value in terms.items():
                sums[name] = sums.get(name, 0) + value.float()
            images = batch[0]
            images_seen += int(images.shape[0])
            self._run_callbacks("on_train_batch_end", self.global_step, terms, images)
            self.global_step += 1
        elapsed = max(time.perf_counter() - start, 1e-9)
        self.recalibrate_batchnorm()
        broadcast_tensors(self.network.buffers())
        means = self._reduce_means(sums, batches, "train")
        seen = torch.tensor([images_seen], dtype=torch.float64, device=self.device)
        seen = all_reduce_sum(seen)
        return {**means, "lr": self.last_lr, "images_per_s": float(seen.item()) / elapsed}

    def recalibrate_batchnorm(self) -> None:
        """Re-estimate the model's BatchNorm statistics on ``bn_recalibration_batches`` batches
        of the train loader with the epoch's final weights (:mod:`featherface.engine.batchnorm`);
        rank 0's estimates then go to every rank with the other buffers."""
        if self.bn_recalibration_batches <= 0:
            return
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            recalibrate_batchnorm(
                self.network,
                self.train_loader,
                self.bn_recalibration_batches,
                lambda batch: self.preprocess_batch(batch)[0],
            )

    def preprocess_batch(self, batch: Any) -> tuple[Tensor, Any]:
        """``(images, targets)`` of a loader batch, moved to the device."""
        images, targets = batch
        images = images.to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format
        )
        return images, map_tensors(targets, lambda t: t.to(self.device, non_blocking=True))

    def compute_loss(self, model: nn.Module, images: Tensor, targets: Any) -> dict[str, Tensor]:
        """Forward (under autocast when AMP is on), then the loss in float32."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = model(images)
        outputs = map_tensors(outputs, lambda t: t.float() if t.is_floating_point() else t)
        terms = self.loss_fn(outputs, targets, images)
        if "total" not in terms:
            raise FeatherFaceError(f"the loss returned {sorted(terms)}, without 'total'")
        return terms

    def train_step(self, batch: Any) -> dict[str, Tensor]:
        """Forward, backward, clip, optimiser and scheduler step; returns the detached terms."""
        images, targets = self.preprocess_batch(batch)
        terms = self.compute_loss(self.model, images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        if self.loss_module is not None:
            average_gradients(self.loss_module.parameters())
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.trained_parameters, self.grad_clip_norm)
            self.last_grad_norm = norm.detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return {name: value.detach() for name, value in terms.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms over the validation loader (averaged over ranks): ``val/*``; empty
        without a validation loader."""
        if self.val_loader is None:
            return {}
        network = self.network
        self.set_train_mode(False)
        sums: dict[str, Tensor] = {}
        batches = 0
        for batch in self.val_loader:
            images, targets = self.preprocess_batch(batch)
            for name, value in self.compute_loss(network, images, targets).items():
                sums[name] = sums.get(name, 0) + value.float()
            batches += 1
        self.set_train_mode(True)
        return self._reduce_means(sums, batches, "val")

    def _reduce_means(self, sums: dict[str, Tensor], batches: int, split: str) -> dict[str, float]:
        """Per-batch means of the summed terms over all ranks, named by :func:`metric_name`."""
        names = list(sums)
        values = [sums[name].reshape(()) for name in names]
        packed = torch.stack([*values, torch.tensor(float(batches), device=self.device)])
        totals = all_reduce_sum(packed.double()).tolist()
        count = max(totals[-1], 1.0)
        return {metric_name(split, name): totals[i] / count for i, name in enumerate(names)}

    def save_model(self, path: Path) -> None:
        """Write the model weights (``best.pt``): ``model_saver`` or the bare ``state_dict``."""
        if self.model_saver is not None:
            self.model_saver(self.network, path)
        else:
            atomic_save(self.network.state_dict(), path)

    def save_state(self, epoch: int, rng: list[dict[str, Any]]) -> None:
        """Atomically write ``last.pt`` for the completed ``epoch``."""
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "model": self.network.state_dict(),
                "loss": {} if self.loss_module is None else self.loss_module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best_loss": self.best_loss,
                "history": self.history,
                "rng": rng,
            },
            self.last_path,
        )

    def load_state(self) -> int:
        """Restore everything from ``last.pt``; returns the epoch to continue from."""
        path = self.last_path
        state = read_weights_file(path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise FeatherFaceError(f"{path}: not a trainer checkpoint (format {CHECKPOINT_FORMAT})")
        planned = (state["epochs"], state["steps_per_epoch"])
        if planned != (self.epochs, self.steps_per_epoch):
            raise FeatherFaceError(
                f"{path}: written for {planned[0]} epochs of {planned[1]} steps, this run has "
                f"{self.epochs} of {self.steps_per_epoch}; delete it to start afresh"
            )
        self.network.load_state_dict(state["model"])
        if self.loss_module is not None:
            self.loss_module.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.best_loss = float(state["best_loss"])
        self.history = [dict(row) for row in state["history"]]
        rng = state["rng"]
        set_rng_state(rng[self.context.rank] if len(rng) > self.context.rank else rng[0])
        self.global_step = (state["epoch"] + 1) * self.steps_per_epoch
        return int(state["epoch"]) + 1

    def write_history(self) -> None:
        """Atomically write ``history.csv`` (columns in order of first appearance)."""
        columns: dict[str, None] = {}
        for row in self.history:
            columns.update(dict.fromkeys(row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.history_path, buffer.getvalue())

    def _run_callbacks(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)
