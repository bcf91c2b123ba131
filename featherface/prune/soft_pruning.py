"""Soft filter pruning at the planned rates and physical removal: the ``finetune`` stage's work
before it fine-tunes the smaller network.

1. **Soft pruning** (He et al., "Soft Filter Pruning", IJCAI 2018) for ``finetune.soft_epochs``:
   before the first epoch and after every ``finetune.mask_interval`` epochs the FPGM-selected
   channels at ``plan.json``'s rates are zeroed (:meth:`PruningGraph.soft_prune`); gradients are
   not masked, so a zeroed filter can grow back and FPGM may pick others next time.
2. **Physical pruning**: the channels FPGM selects on the soft-pruned weights are removed
   (:meth:`PruningGraph.prune`), and the network's layer sizes go into its ``config["widths"]``.
3. **Fine-tuning** of the smaller network for ``finetune.epochs`` with the MultiBox loss, through
   the training body of every training stage (:func:`featherface.engine.fit.train_network`);
   the stage module :mod:`featherface.stages.finetune` runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from featherface.data.prepare import load_prepared
from featherface.engine.callbacks import Callback, ProgressCallback
from featherface.engine.distributed import seed_everything
from featherface.engine.fit import fresh_or_resumed, optimisation, training_loaders
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.engine.trainer import Trainer
from featherface.errors import FeatherFaceError
from featherface.models.widths import layer_widths
from featherface.params import FinetuneParams
from featherface.prune.groups import PruningGraph
from featherface.prune.search import Rates
from featherface.utils.jsonfile import read_json


class SoftPruningCallback(Callback):
    """Zero the FPGM plan at ``rates`` before training and after every ``interval`` epochs."""

    def __init__(self, graph: PruningGraph, rates: Rates, interval: int) -> None:
        self.graph = graph
        self.rates = rates
        self.interval = interval

    def apply(self) -> None:
        """Re-select the channels on the current weights and zero them."""
        self.graph.soft_prune(self.graph.plan(self.rates))

    def on_fit_start(self, trainer: Trainer) -> None:
        self.apply()

    def on_epoch_end(self, epoch: int, metrics: Any) -> None:
        if (epoch + 1) % self.interval == 0:
            self.apply()


def read_plan(path: Path) -> dict[str, Any]:
    """``plan.json`` of the prune stage; a missing or malformed file is a one-line error."""
    plan = read_json(path, "pruning plan not found (run the prune stage)")
    rates = plan.get("rates") if isinstance(plan, dict) else None
    if not isinstance(rates, dict) or not all(isinstance(v, int | float) for v in rates.values()):
        raise FeatherFaceError(f"{path}: no 'rates' mapping of layer group to number")
    multiple = plan.setdefault("channel_multiple", 1)  # plans written before the key existed
    if not isinstance(multiple, int) or multiple < 1:
        raise FeatherFaceError(f"{path}: 'channel_multiple' must be a whole number >= 1")
    return plan


def soft_prune_training(
    model: nn.Module,
    graph: PruningGraph,
    rates: Rates,
    params: FinetuneParams,
    prepare_dir: Path,
    out_dir: Path,
    show_progress: bool,
    run_params: dict[str, Any],
) -> None:
    """Train ``model`` for ``params.soft_epochs`` with :class:`SoftPruningCallback` (every
    ``params.mask_interval`` epochs); working files in ``out_dir`` resume only when
    ``run_params`` (the rates, the student's checkpoint, the settings and the code) and the data
    are those of the interrupted run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh_or_resumed(out_dir, run_params, prepare_dir)
    loaders = training_loaders(params, load_prepared(prepare_dir))
    optimizer, schedule = optimisation(params)
    callbacks = [
        ProgressCallback(show_progress),
        SoftPruningCallback(graph, rates, params.mask_interval),
    ]
    trainer = Trainer(
        model, DetectionLoss(MultiBoxLoss()), loaders[0], out_dir, val_loader=loaders[1],
        optimizer=optimizer, schedule=schedule, epochs=params.soft_epochs,
        grad_clip_norm=params.grad_clip_norm, seed=params.seed,
        bn_recalibration_batches=params.bn_recalibration_batches,
        callbacks=callbacks,
    )  # fmt: skip
    trainer.fit()


def prune_to_plan(
    model: nn.Module,
    plan: dict[str, Any],
    params: FinetuneParams,
    prepare_dir: Path,
    soft_dir: Path,
    run_params: dict[str, Any],
    show_progress: bool = True,
) -> nn.Module:
    """Steps 1 and 2 of the module docstring on ``model`` (in place): soft pruning for
    ``params.soft_epochs`` (working files in ``soft_dir``), then removal of the channels FPGM
    selects at the plan's rates. The pruned network's layer sizes go into its
    ``config["widths"]``, so its checkpoint rebuilds through the registry. Returns ``model``."""
    rates = {name: float(value) for name, value in plan["rates"].items()}
    seed_everything(params.seed)
    graph = PruningGraph(model, channel_multiple=plan["channel_multiple"])
    if params.soft_epochs > 0:
        soft_prune_training(
            model, graph, rates, params, prepare_dir, soft_dir, show_progress, run_params
        )
    graph.soft_prune(graph.plan(rates))
    graph.prune(graph.plan(rates))
    model.config = {**model.config, "widths": layer_widths(model)}
    return model
