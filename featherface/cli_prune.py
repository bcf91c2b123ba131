"""The pruning commands of the ``featherface`` command line: ``prune groups``, ``prune search``
(stage ``prune``) and ``finetune`` (stage ``finetune``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from featherface.cli import (
    ParamsOption,
    _log_training,
    _relaunch_under_torchrun,
    _tracks,
    app,
    console,
    reports_errors,
)

prune_app = typer.Typer(help="B-FPGM pruning of the Nano-B student.", no_args_is_help=True)
app.add_typer(prune_app, name="prune")

StudentOption = Annotated[Path, typer.Option("--student", help="Distilled student checkpoint.")]
PrepareOption = Annotated[Path, typer.Option("--prepare-dir", help="Output of prepare.")]


@prune_app.command("groups")
@reports_errors
def prune_groups(
    student: StudentOption = Path("stages/distill/model.pt"),
    arch: Annotated[
        str, typer.Option(help="Registered model to inspect when the checkpoint is absent.")
    ] = "featherface-nano-b",
) -> None:
    """Print the six layer groups: their channel groups, widths and parameters."""
    from featherface.models import build_model
    from featherface.models.checkpoint import load_checkpoint
    from featherface.models.complexity import params_total
    from featherface.prune.groups import PruningGraph, group_parameters

    model = load_checkpoint(student) if student.is_file() else build_model(arch)
    graph = PruningGraph(model)
    table = Table(title=f"{'checkpoint ' + str(student) if student.is_file() else arch}")
    table.add_column("layer group")
    table.add_column("root layer")
    for column in ("channels", "layers", "layer parameters"):
        table.add_column(column, justify="right")
    for name, groups in graph.by_layer_group().items():
        for group in groups:
            table.add_row(
                name, group.root, str(group.channels), str(len(group.layers)),
                f"{group_parameters(model, group):,}",
            )  # fmt: skip
    console.print(table)
    console.print(f"parameters of the whole network: {params_total(model):,}")


@prune_app.command("search")
@reports_errors
def prune_search(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    student: StudentOption = Path("stages/distill/model.pt"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/prune"),
) -> None:
    """Stage `prune`: Bayesian search of per-layer-group FPGM rates into plan.json."""
    from featherface.params import load_params, section_dict
    from featherface.prune.stage import search_plan
    from featherface.tracking import stage_run

    settings = load_params(params)
    run_params = {"prune": section_dict(settings.prune)}
    with stage_run(
        "prune", run_params, settings.tracking.experiment, _tracks(settings.tracking.enabled)
    ) as mlflow:
        plan = search_plan(
            settings.prune, student, prepare_dir, out, mlflow, lambda line: console.print(line)
        )
        if mlflow is not None:
            mlflow.log_metrics(
                {"params_total": plan["params"], "target_params": plan["target_params"]}
            )
            mlflow.log_artifact(str(out / "plan.json"))
            mlflow.log_artifact(str(out / "trials.csv"))
    rates = ", ".join(f"{name} {rate:.2f}" for name, rate in plan["rates"].items())
    console.print(
        f"plan: {rates}; {plan['params']:,} parameters (target {plan['target_params']:,})"
    )


@app.command()
@reports_errors
def finetune(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    student: StudentOption = Path("stages/distill/model.pt"),
    plan: Annotated[Path, typer.Option(help="plan.json of the prune stage.")] = Path(
        "stages/prune/plan.json"
    ),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/finetune"),
) -> None:
    """Stage `finetune`: soft pruning at the planned rates, physical removal, fine-tuning."""
    from featherface.params import load_params, section_dict
    from featherface.prune.finetune import finetune_pruned
    from featherface.tracking import stage_run

    settings = load_params(params)
    arguments = ["finetune", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    arguments += ["--student", str(student), "--plan", str(plan), "--out", str(out)]
    _relaunch_under_torchrun(settings, "finetune", arguments)
    run_params = {
        "train": section_dict(settings.train),
        "finetune": section_dict(settings.finetune),
        "prune": {"mask_interval": settings.prune.mask_interval},
    }
    with stage_run(
        "finetune", run_params, settings.tracking.experiment, _tracks(settings.tracking.enabled)
    ) as mlflow:
        metrics = finetune_pruned(
            settings.finetune, settings.prune.mask_interval, plan, student, prepare_dir, out,
            mlflow,
        )  # fmt: skip
        _log_training(mlflow, metrics, out)
    if metrics:
        console.print(" ".join(f"{key}={value:.4g}" for key, value in metrics.items()))
