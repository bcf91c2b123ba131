"""The ``distill`` stage: train the Nano-B student from the ground truth and a frozen teacher.

The loss is :class:`~featherface.engine.distill.DistillationLoss` with the weights of the
``distill`` section of ``params.yaml``; ``alpha: 0`` is plain MultiBox training of the same
student (the ablation), and then the teacher is not even loaded.

Files in the stage folder (``stages/distill``) are those of the ``teacher`` stage (see
:mod:`featherface.engine.teacher`). ``metrics.json`` adds ``teacher_params_total`` and
``compression`` (teacher parameters over student parameters, both true counts).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from featherface.engine.distill import DistillationLoss
from featherface.engine.distributed import seed_everything
from featherface.engine.teacher import train_network
from featherface.errors import FeatherFaceError
from featherface.models import build_model
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.params import DistillParams, ModelParams
from featherface.utils.fingerprint import file_sha256


def distill_student(
    params: DistillParams,
    model_params: ModelParams,
    prepare_dir: Path,
    teacher_path: Path,
    out_dir: Path,
    mlflow: Any = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Stage ``distill``: train ``params.arch`` into ``out_dir/model.pt``; returns the metrics
    of ``metrics.json``."""
    weights = params.weights()
    teacher = None
    run_params: dict[str, Any] = {"distill": asdict(params), "model": asdict(model_params)}
    if weights.alpha > 0:
        if not teacher_path.is_file():
            raise FeatherFaceError(
                f"{teacher_path}: teacher checkpoint not found (run the teacher stage first, "
                "or set distill.alpha: 0 to train without one)"
            )
        teacher = load_checkpoint(teacher_path)
        run_params["teacher_sha256"] = file_sha256(teacher_path)
    seed_everything(params.seed)  # the initial weights depend on the seed alone
    student = build_model(params.arch, backbone_weights=model_params.backbone_weights)
    extra: dict[str, Any] = {}
    if teacher is not None:
        extra["teacher_params_total"] = params_total(teacher)
        extra["compression"] = extra["teacher_params_total"] / params_total(student)
    loss = DistillationLoss(student, teacher, weights)
    try:
        return train_network(
            params, student, loss, prepare_dir, out_dir, run_params, mlflow, show_progress, extra
        )
    finally:
        loss.remove_taps()
