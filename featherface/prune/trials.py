"""B-FPGM's Bayesian search for per-layer-group FPGM rates, run on one distilled student (the
``prune`` stage's work).

Each search point is first scaled into the parameter band (see :mod:`featherface.prune.search`).
Each trial copies the distilled student, zeroes the FPGM-selected channels of every layer group
at the trial's rates (soft filter pruning), trains ``prune.trial_steps`` steps on the training
split, zeroes the re-selected channels again, re-estimates the BatchNorm statistics and scores
the MultiBox loss on the first ``prune.trial_images`` validation images. The parameter count is
that of the student with the plan removed for real. The objective is in
:mod:`featherface.prune.search`.

Files in the stage folder (``stages/prune``):

- ``trials.csv``: one row per trial (rates, true parameter count, loss, objective, seconds), a
  DVC plot;
- ``plan.json``: the chosen rates (the best trial inside the parameter band, scaled into the
  band when no trial reached it), ``prune.channel_multiple`` (every group's kept width is a
  multiple of it; ``finetune`` reads it from here), the student's and the target parameter
  counts, and the count the plan gives. ``params.yaml`` is never written.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from featherface.data.augment import EvalTransform, TrainAugmentation
from featherface.data.dataset import FaceDataset, make_loader
from featherface.data.prepare import load_prepared
from featherface.engine.batchnorm import recalibrate_batchnorm
from featherface.engine.distributed import seed_everything
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.engine.optim import OptimizerConfig, ScheduleConfig
from featherface.engine.trainer import Trainer
from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.params import PruneParams
from featherface.prune.groups import LAYER_GROUPS, PruningGraph, pruned_copy
from featherface.prune.search import Budget, Rates, Trial, best_trial, fit_to_budget, search_rates
from featherface.utils.atomic import write_json, write_text

BN_BATCHES = 4  # training batches that re-estimate BatchNorm statistics before a trial's score


class TrialRunner:
    """Scores plans on one student: soft prune, a short training, held-out MultiBox loss."""

    def __init__(self, student: nn.Module, params: PruneParams, prepare_dir: Path) -> None:
        self.student = student
        self.params = params
        data = load_prepared(prepare_dir)
        train = FaceDataset(data, "train", TrainAugmentation(params.image_size), params.seed)
        val = FaceDataset(data, "val", EvalTransform(params.image_size), params.seed)
        held_out = torch.utils.data.Subset(val, range(min(params.trial_images, len(val))))
        self.train_loader = make_loader(
            train, params.batch_size, True, params.num_workers, params.seed, True
        )
        self.held_out_loader = make_loader(held_out, params.batch_size, False, 0, params.seed)
        self.loss = DetectionLoss(MultiBoxLoss())
        self._counts: dict[tuple[float, ...], int] = {}

    def count(self, rates: Rates) -> int:
        """True parameter count of the student with the FPGM plan at ``rates`` removed."""
        key = tuple(round(rates[name], 6) for name in sorted(rates))
        if key not in self._counts:
            self._counts[key] = params_total(
                pruned_copy(self.student, rates, self.params.channel_multiple)
            )
        return self._counts[key]

    @torch.no_grad()
    def held_out_loss(self, model: nn.Module) -> float:
        """Mean total MultiBox loss over the held-out images, the model in eval mode."""
        model.eval()
        total, batches = 0.0, 0
        for images, targets in self.held_out_loader:
            total += float(self.loss(model(images), targets, images)["total"])
            batches += 1
        return total / batches

    def score(self, rates: Rates, out_dir: Path) -> tuple[int, float]:
        """``(params, loss)`` of the plan at ``rates`` (see the module docstring)."""
        seed_everything(self.params.seed)
        model = copy.deepcopy(self.student)
        graph = PruningGraph(model, channel_multiple=self.params.channel_multiple)
        graph.soft_prune(graph.plan(rates))
        if any(rates.values()):
            trainer = Trainer(
                model, self.loss, self.train_loader, out_dir,
                optimizer=OptimizerConfig(lr=self.params.lr),
                schedule=ScheduleConfig(name="step"), grad_clip_norm=10.0, seed=self.params.seed,
            )  # fmt: skip
            trainer.set_train_mode(True)
            for batch in itertools.islice(self.train_loader, self.params.trial_steps):
                trainer.train_step(batch)
            graph.soft_prune(graph.plan(rates))
            recalibrate_batchnorm(model, self.train_loader, BN_BATCHES, lambda batch: batch[0])
        return self.count(rates), self.held_out_loss(model)


def search_plan(
    params: PruneParams,
    student_path: Path,
    prepare_dir: Path,
    out_dir: Path,
    on_trial: Callable[[Trial], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the search and write ``trials.csv`` and ``plan.json`` into ``out_dir``; returns the
    plan. ``on_trial`` is called with each finished :class:`Trial`, ``log`` with progress
    lines."""
    if not student_path.is_file():
        raise FeatherFaceError(f"{student_path}: student checkpoint not found (run distill first)")
    student = load_checkpoint(student_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = TrialRunner(student, params, prepare_dir)
    student_params = params_total(student)
    budget = Budget((1.0 - params.rate) * student_params, params.tolerance)
    work = out_dir / "trainer"
    base_params, base_loss = runner.score(dict.fromkeys(LAYER_GROUPS, 0.0), work)
    log(f"unpruned student: {base_params:,} parameters, held-out loss {base_loss:.4f}")

    def report(trial: Trial) -> None:
        log(
            f"trial {trial.number + 1}/{params.n_calls}: {trial.params:,} parameters, "
            f"loss {trial.loss:.4f}, objective {trial.objective:.4f}, {trial.seconds:.1f} s"
        )
        if on_trial is not None:
            on_trial(trial)

    def into_band(rates: Rates) -> Rates:
        return fit_to_budget(rates, runner.count, budget, params.max_rate)

    trials = search_rates(
        lambda rates: runner.score(rates, work), base_loss, budget, params.penalty,
        params.n_calls, params.max_rate, params.seed, report, into_band,
    )  # fmt: skip
    chosen = best_trial(trials, budget)
    rates = fit_to_budget(chosen.rates, runner.count, budget, params.max_rate)
    plan = {
        "rates": rates,
        "trial": chosen.number,
        "rescaled": rates != chosen.rates,
        "student_params": student_params,
        "target_params": round(budget.target),
        "tolerance": params.tolerance,
        "channel_multiple": params.channel_multiple,
        "params": runner.count(rates),
        "base_loss": base_loss,
    }
    write_text(out_dir / "trials.csv", pd.DataFrame([t.row() for t in trials]).to_csv(index=False))
    write_json(out_dir / "plan.json", plan)
    return plan
