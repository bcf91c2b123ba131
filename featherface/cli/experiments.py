"""Experiment commands: ``featherface exp run --preset`` and ``featherface runs``."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from featherface.terminal import ParamsOption, console, reports_errors


def _dvc() -> list[str]:
    """How to call DVC: ``dvc`` on the PATH, else this interpreter's ``-m dvc``."""
    return ["dvc"] if shutil.which("dvc") else [sys.executable, "-m", "dvc"]


def new_pipeline_id() -> str:
    """A fresh pipeline execution id: UTC time and 6 random hex digits."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@reports_errors
def exp_run(
    preset: Annotated[str, typer.Option(help="Preset name: pipelines/NAME.yaml.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-S", help="More key=value overrides, applied after the preset."),
    ] = None,
    queue: Annotated[bool, typer.Option(help="Queue the experiment (dvc queue start).")] = False,
    name: Annotated[str | None, typer.Option(help="Experiment name.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the command, do not run it.")] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Run the DAG with a preset, as individual `dvc exp run -S key=value` overrides (only the
    keys whose value differs from params.yaml); prints the command first."""
    from featherface.presets import (
        applied,
        exp_run_command,
        parse_overrides,
        preset_overrides,
        preset_path,
        read_yaml,
    )
    from featherface.tracking import PIPELINE_ENV

    path = preset_path(preset, Path.cwd())
    current = read_yaml(params)
    from_preset = preset_overrides(read_yaml(path), current)
    overrides = from_preset + parse_overrides(set_ or [])
    applied(current, from_preset, path)
    applied(current, overrides, Path("-S"))
    command = exp_run_command(overrides, queue, name)
    typer.echo(shlex.join(command))
    if dry_run:
        return
    env = dict(os.environ)
    if not queue:  # queued runs start later, each under its own DVC experiment name
        env[PIPELINE_ENV] = env.get(PIPELINE_ENV) or new_pipeline_id()
        console.print(f"pipeline execution {env[PIPELINE_ENV]}")
    completed = subprocess.run([*_dvc(), *command[1:]], env=env, check=False)
    raise typer.Exit(completed.returncode)


@reports_errors
def runs(
    experiment: Annotated[
        str | None,
        typer.Option(help="Only this MLflow experiment; default: every experiment of the store."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest pipeline executions shown.")] = 5,
    output: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
) -> None:
    """Recent pipeline executions from MLflow: per model its true parameter count, AP easy /
    medium / hard and ONNX latency (640 px, 1 thread)."""
    from featherface.runs import experiment_names, recent_executions
    from featherface.tracking import repo_root, tracking_uri

    store = repo_root() / "mlruns" / "mlflow.db"
    if not os.environ.get("MLFLOW_TRACKING_URI") and not store.is_file():
        console.print(f"no MLflow store at {store} (no stage has run with tracking on)")
        return
    uri = tracking_uri()
    table = recent_executions(uri, experiment, limit)
    if table.empty:
        where = f"MLflow experiment {experiment!r}" if experiment else "any MLflow experiment"
        known = ", ".join(experiment_names(uri)) or "none"
        console.print(f"no pipeline executions in {where} ({uri}; experiments: {known})")
        return
    if output == "csv":
        typer.echo(table.to_csv(index=False), nl=False)
    elif output == "json":
        typer.echo(table.to_json(orient="records", indent=2))
    else:
        typer.echo(table.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
