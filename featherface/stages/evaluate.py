"""Stage ``evaluate``: WIDER FACE easy/medium/hard AP, PR curves and a report for every model the
pipeline produced (:func:`featherface.evaluate.scoring.evaluate_models`), in
``stages/evaluate``.

In MLflow the stage run gets every model's figures named as DVC names them (``teacher.ap_hard``,
for the runs table), and each model gets a nested run tagged ``featherface.model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from featherface.errors import FeatherFaceError
from featherface.evaluate.scoring import evaluate_models, stored_detection_files
from featherface.params import load_params, section_dict
from featherface.pipeline_files import EVALUATED, existing_model_files
from featherface.terminal import (
    OutOption,
    ParamsOption,
    PrepareOption,
    console,
    named_paths,
    progress_reporter,
    reports_errors,
    say,
)
from featherface.tracking import Tracker, stage_run


def log_models(
    tracker: Tracker, metrics: Mapping[str, Mapping[str, Any]], models: Mapping[str, Path]
) -> None:
    """Per model: its figures on the stage run (``name.key``) and a nested run of its own."""
    flat = {
        f"{name}.{key}": value for name, values in metrics.items() for key, value in values.items()
    }
    tracker.log_metrics(flat)
    for name, values in metrics.items():
        with tracker.child(name, {"featherface.model": name}) as run:
            run.log_params({"model_path": str(models[name])})
            run.log_metrics(values)


def ap_table(metrics: Mapping[str, Mapping[str, Any]]) -> Table:
    """AP easy / medium / hard and true parameters per model."""
    table = Table(title="WIDER FACE AP (validation split)")
    for column in ("model", "easy", "medium", "hard", "params"):
        table.add_column(column, justify="right")
    for name, values in metrics.items():
        aps = (f"{values[f'ap_{s}']:.4f}" for s in ("easy", "medium", "hard"))
        table.add_row(name, *aps, f"{values['params_total']:,}")
    return table


@reports_errors
def evaluate(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH of a model to score; default: every pipeline model present."),
    ] = None,
    stored: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH of the val_detections.npz kept by model NAME's training stage, used "
            "instead of running the model when made by the same model file, data, code and "
            "settings; default without --model: the files next to the pipeline's models."
        ),
    ] = None,
    prepare_dir: PrepareOption = Path("stages/prepare"),
    out: OutOption = Path("stages/evaluate"),
) -> None:
    """Stage `evaluate`: WIDER FACE AP, PR curves and a report for each model."""
    settings = load_params(params)
    models = named_paths(model) if model else existing_model_files(EVALUATED)
    for name, path in models.items():
        if not path.is_file():
            raise FeatherFaceError(f"{path}: model file of {name!r} not found")
    if stored:
        stored_files = named_paths(stored, "--stored")
    else:
        stored_files = {} if model else stored_detection_files(models)
    sections = {"evaluate": section_dict(settings.evaluate)}
    with stage_run(
        "evaluate", sections, settings.tracking.experiment, settings.tracking.enabled
    ) as tracker:
        with progress_reporter() as report:
            metrics, _ = evaluate_models(
                models, prepare_dir, out, settings.evaluate, report, stored_files, say
            )
        log_models(tracker, metrics, models)
        tracker.log_artifacts(out, "evaluate")
    console.print(ap_table(metrics))
