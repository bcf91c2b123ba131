"""Stage ``teacher``: train ``teacher.arch`` (FeatherFace V1) on the prepared data with the
MultiBox loss.

Outputs in ``stages/teacher``: ``model.pt`` (lowest validation loss), ``history.csv``,
``metrics.json`` and ``val_detections.npz`` (:mod:`featherface.stages.training`); the trainer's
working files let an interrupted run resume (:mod:`featherface.engine.fit`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from featherface.engine.distributed import seed_everything
from featherface.engine.fit import train_network
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.models import build_model
from featherface.params import load_params, section_dict
from featherface.stages.training import finish_training, machine_tags, relaunch_under_torchrun
from featherface.terminal import ParamsOption, PrepareOption, reports_errors
from featherface.tracking import stage_run
from featherface.utils.fingerprint import code_fingerprint


@reports_errors
def teacher(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/teacher"),
) -> None:
    """Stage `teacher`: train `teacher.arch` (FeatherFace V1) on the prepared data."""
    settings = load_params(params)
    arguments = ["teacher", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    relaunch_under_torchrun(settings.launch, "teacher", [*arguments, "--out", str(out)])
    sections = {
        "model": section_dict(settings.model),
        "launch": section_dict(settings.launch),
        "teacher": section_dict(settings.teacher),
    }
    train = settings.teacher
    with stage_run(
        "teacher", sections, settings.tracking.experiment, settings.tracking.enabled,
        machine_tags(),
    ) as tracker:  # fmt: skip
        seed_everything(train.seed)  # the initial weights depend on the seed alone
        model = build_model(train.arch, backbone_weights=settings.model.backbone_weights)
        run_params = {
            "train": asdict(train),
            "model": asdict(settings.model),
            "code_sha256": code_fingerprint(__name__),
        }
        result = train_network(
            train, model, DetectionLoss(MultiBoxLoss()), prepare_dir, out, run_params,
            tracker.log_metrics,
        )  # fmt: skip
        finish_training(result, prepare_dir, out, tracker)
