"""Stage ``teacher``: train ``teacher.arch`` (FeatherFace V1) on the prepared data with the
MultiBox loss.

Outputs in ``stages/teacher``: ``model.pt`` (lowest validation loss), ``history.csv``,
``metrics.json`` and ``val_detections.npz`` (:mod:`featherface.stages.training`); the trainer's
working files let an interrupted run resume (:mod:`featherface.engine.fit`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from featherface.engine.distributed import seed_everything
from featherface.engine.fit import train_network
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.models import build_model
from featherface.params import load_params
from featherface.stages.training import finish_training, relaunch_under_torchrun, training_run
from featherface.terminal import OutOption, ParamsOption, PrepareOption, reports_errors
from featherface.utils.fingerprint import code_fingerprint


@reports_errors
def teacher(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    out: OutOption = Path("stages/teacher"),
) -> None:
    """Stage `teacher`: train `teacher.arch` (FeatherFace V1) on the prepared data."""
    settings = load_params(params)
    arguments = ["teacher", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    relaunch_under_torchrun(settings.launch, "teacher", [*arguments, "--out", str(out)])
    train = settings.teacher
    with training_run("teacher", settings, ("model", "launch", "teacher")) as tracker:
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
