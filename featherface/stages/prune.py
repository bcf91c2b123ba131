"""Stage ``prune``: B-FPGM's Bayesian search for per-layer-group FPGM rates on the distilled
student (:func:`featherface.prune.trials.search_plan`), into ``stages/prune/plan.json`` and
``trials.csv``; every trial is a nested run in MLflow.

``featherface prune groups`` (a helper that shows the layer groups) is a subcommand of the same
command group; it is not part of the stage.
"""

from __future__ import annotations

from pathlib import Path

import typer

from featherface.params import load_params, section_dict
from featherface.prune.search import Trial
from featherface.prune.trials import search_plan
from featherface.terminal import (
    OutOption,
    ParamsOption,
    PrepareOption,
    StudentOption,
    console,
    reports_errors,
    say,
)
from featherface.tracking import Tracker, stage_run


def log_trial(tracker: Tracker, trial: Trial) -> None:
    """One nested run per trial: its rates as parameters, its count, loss, objective and time
    as metrics."""
    with tracker.child(f"trial-{trial.number}", {"trial": str(trial.number)}) as run:
        run.log_params({f"rate_{k}": round(v, 4) for k, v in trial.rates.items()})
        run.log_metrics(
            {
                "params_total": trial.params,
                "loss": trial.loss,
                "objective": trial.objective,
                "seconds": trial.seconds,
            }
        )


@reports_errors
def prune(
    ctx: typer.Context,
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    student: StudentOption = Path("stages/distill/model.pt"),
    out: OutOption = Path("stages/prune"),
) -> None:
    """Stage `prune`: Bayesian search of per-layer-group FPGM rates into plan.json."""
    if ctx.invoked_subcommand is not None:  # `featherface prune groups`
        return
    settings = load_params(params)
    sections = {"prune": section_dict(settings.prune)}
    with stage_run(
        "prune", sections, settings.tracking.experiment, settings.tracking.enabled
    ) as tracker:
        plan = search_plan(
            settings.prune, student, prepare_dir, out,
            lambda trial: log_trial(tracker, trial), say,
        )  # fmt: skip
        tracker.log_metrics(
            {"params_total": plan["params"], "target_params": plan["target_params"]}
        )
        tracker.log_artifact(out / "plan.json")
        tracker.log_artifact(out / "trials.csv")
    rates = ", ".join(f"{name} {rate:.2f}" for name, rate in plan["rates"].items())
    console.print(
        f"plan: {rates}; {plan['params']:,} parameters (target {plan['target_params']:,})"
    )
