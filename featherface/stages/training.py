"""What the training stages (``teacher``, ``distill``, ``finetune``) share around
:func:`featherface.engine.fit.train_network`: the re-launch under ``torchrun``, the machine they
ran on, and the closing ``metrics.json`` with validation AP.

A training stage's ``metrics.json`` holds ``params_total``, ``params_paper``, ``val_loss``, the
WIDER-protocol ``ap_easy``/``ap_medium``/``ap_hard`` of ``model.pt`` on the validation split (its
detections kept in ``val_detections.npz`` for the ``evaluate`` stage), the stage's own figures,
and ``machine``: the CPU model and torch's CPU capability. Training is bit-reproducible on one
CPU type only, so the machine is recorded next to every figure (also as run tags in MLflow).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from featherface.engine.fit import FitResult
from featherface.engine.launch import torchrun_command
from featherface.evaluate.scoring import validation_ap
from featherface.params import LaunchParams, Params, section_dict
from featherface.terminal import metrics_line, say
from featherface.tracking import TAG_PREFIX, Tracker, stage_run
from featherface.utils.atomic import write_json
from featherface.utils.machine import machine_info


def relaunch_under_torchrun(launch: LaunchParams, stage: str, arguments: list[str]) -> None:
    """Run ``featherface <arguments>`` under torchrun and exit with its status when the
    ``launch`` section asks for several processes (:mod:`featherface.engine.launch`); else
    return and let this process train."""
    command = torchrun_command(launch, stage, arguments)
    if command is None:
        return
    say(f"{stage}: {shlex.join(command)}")
    raise typer.Exit(subprocess.run(command, check=False).returncode)


def machine_tags() -> dict[str, str]:
    """``featherface.cpu`` and ``featherface.torch_cpu_capability`` run tags."""
    return {f"{TAG_PREFIX}{key}": value for key, value in machine_info().items()}


@contextmanager
def training_run(stage: str, settings: Params, sections: tuple[str, ...]) -> Iterator[Tracker]:
    """The tracking run of a training stage: the named ``params.yaml`` sections as parameters,
    the machine as tags (:func:`machine_tags`)."""
    logged = {name: section_dict(getattr(settings, name)) for name in sections}
    tracking = settings.tracking
    with stage_run(stage, logged, tracking.experiment, tracking.enabled, machine_tags()) as run:
        yield run


def finish_training(
    result: FitResult | None,
    prepare_dir: Path,
    out_dir: Path,
    tracker: Tracker,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the trained model, write ``metrics.json`` (module docstring), log it and
    ``history.csv``, and print the figures; returns the metrics (empty on ranks other than 0,
    whose ``result`` is ``None``)."""
    if result is None:
        return {}
    model_file = out_dir / "model.pt"
    metrics: dict[str, Any] = {
        **result.metrics,
        **validation_ap(result.model, prepare_dir, result.device, model_file),
        **(extra_metrics or {}),
        "machine": machine_info(),
    }
    write_json(out_dir / "metrics.json", metrics)
    tracker.log_metrics(metrics)
    for name in ("metrics.json", "history.csv"):
        tracker.log_artifact(out_dir / name)
    say(metrics_line(metrics))
    return metrics
