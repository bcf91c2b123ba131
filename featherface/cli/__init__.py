"""The ``featherface`` command line, built in one place from the stage modules
(:mod:`featherface.stages`) and the tool commands grouped by task: :mod:`.inspect`,
:mod:`.deploy` and :mod:`.experiments`. No command registers itself on import."""

from __future__ import annotations

import typer

from featherface.cli import deploy, experiments, inspect
from featherface.stages import distill, evaluate, export, finetune, prepare, prune, teacher

app = typer.Typer(
    help="FeatherFace: train, distil, prune, export and evaluate tiny face detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# The pipeline's stages, in DAG order: command name = DVC stage = module.
app.command("prepare")(prepare.prepare)
app.command("teacher")(teacher.teacher)
app.command("distill")(distill.distill)
prune_app = typer.Typer(
    help="Stage `prune`: Bayesian search of per-layer-group FPGM rates into plan.json; "
    "`prune groups` shows the layer groups.",
    invoke_without_command=True,
)
prune_app.callback()(prune.prune)
prune_app.command("groups")(inspect.prune_groups)
app.add_typer(prune_app, name="prune")
app.command("finetune")(finetune.finetune)
app.command("export")(export.export)
app.command("evaluate")(evaluate.evaluate)

# Inspect models, data and detections.
app.command("info")(inspect.info)
app.command("detect")(inspect.detect)
app.command("wider-ap")(inspect.wider_ap)
app.command("import-weights")(inspect.import_weights)
data_app = typer.Typer(help="Download and check WIDER-format data.", no_args_is_help=True)
data_app.command("download")(inspect.data_download)
data_app.command("validate")(inspect.data_validate)
app.add_typer(data_app, name="data")

# Deploy: latency and the model registry.
app.command("bench")(deploy.bench)
app.command("promote")(deploy.promote)

# Experiments: presets and the runs recorded in MLflow.
exp_app = typer.Typer(help="DVC experiments from named presets.", no_args_is_help=True)
exp_app.command("run")(experiments.exp_run)
app.add_typer(exp_app, name="exp")
app.command("runs")(experiments.runs)
