"""Stage ``distill``: train the ``distill.arch`` student (Nano-B) from the ground truth and a
frozen teacher.

The loss is :class:`~featherface.engine.distill_loss.DistillationLoss` with the weights of the
``distill`` section; ``alpha: 0`` is plain MultiBox training of the same student (the ablation),
and then the teacher is not even loaded. Outputs in ``stages/distill`` are those of the
``teacher`` stage; ``metrics.json`` adds ``teacher_params_total`` and ``compression`` (teacher
over student parameters, both true counts).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from featherface.engine.distill_loss import DistillationLoss
from featherface.engine.distributed import seed_everything
from featherface.engine.fit import train_network
from featherface.errors import FeatherFaceError
from featherface.models import build_model
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.params import load_params
from featherface.stages.training import finish_training, relaunch_under_torchrun, training_run
from featherface.terminal import (
    OutOption,
    ParamsOption,
    PrepareOption,
    TeacherOption,
    reports_errors,
)
from featherface.utils.fingerprint import code_fingerprint, file_sha256


@reports_errors
def distill(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    teacher: TeacherOption = Path("stages/teacher/model.pt"),
    out: OutOption = Path("stages/distill"),
) -> None:
    """Stage `distill`: train the `distill.arch` student (Nano-B) from the ground truth and the
    frozen teacher."""
    settings = load_params(params)
    arguments = ["distill", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    arguments += ["--teacher", str(teacher), "--out", str(out)]
    relaunch_under_torchrun(settings.launch, "distill", arguments)
    train = settings.distill
    weights = train.weights()
    with training_run("distill", settings, ("model", "launch", "distill")) as tracker:
        run_params: dict[str, Any] = {
            "distill": asdict(train),
            "model": asdict(settings.model),
            "code_sha256": code_fingerprint(__name__),
        }
        frozen = None
        if weights.alpha > 0:
            if not teacher.is_file():
                raise FeatherFaceError(
                    f"{teacher}: teacher checkpoint not found (run the teacher stage first, "
                    "or set distill.alpha: 0 to train without one)"
                )
            frozen = load_checkpoint(teacher)
            run_params["teacher_sha256"] = file_sha256(teacher)
        seed_everything(train.seed)  # the initial weights depend on the seed alone
        student = build_model(train.arch, backbone_weights=settings.model.backbone_weights)
        extra: dict[str, Any] = {}
        if frozen is not None:
            extra["teacher_params_total"] = params_total(frozen)
            extra["compression"] = extra["teacher_params_total"] / params_total(student)
        loss = DistillationLoss(student, frozen, weights)
        try:
            result = train_network(
                train, student, loss, prepare_dir, out, run_params, tracker.log_metrics
            )
        finally:
            loss.remove_taps()
        finish_training(result, prepare_dir, out, tracker, extra)
