"""Stage ``finetune``: soft filter pruning at the planned rates, physical removal of the pruned
channels, then fine-tuning of the smaller network (:mod:`featherface.prune.soft_pruning`).

Outputs in ``stages/finetune`` are those of the ``teacher`` stage; ``model.pt`` rebuilds through
the registry (``featherface-nano-b`` with ``widths``) without any pruning code. ``metrics.json``
adds ``student_params_total``, ``target_params`` and ``params_ratio`` (pruned over student
parameters, both true counts). The soft-pruning run keeps its working files in ``soft/``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from featherface.engine.fit import train_network
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.params import load_params
from featherface.prune.soft_pruning import prune_to_plan, read_plan
from featherface.stages.training import finish_training, relaunch_under_torchrun, training_run
from featherface.terminal import (
    OutOption,
    ParamsOption,
    PrepareOption,
    StudentOption,
    reports_errors,
)
from featherface.utils.fingerprint import code_fingerprint, file_sha256


@reports_errors
def finetune(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    student: StudentOption = Path("stages/distill/model.pt"),
    plan: Annotated[Path, typer.Option(help="plan.json of the prune stage.")] = Path(
        "stages/prune/plan.json"
    ),
    out: OutOption = Path("stages/finetune"),
) -> None:
    """Stage `finetune`: soft pruning at the planned rates, physical removal, fine-tuning."""
    settings = load_params(params)
    arguments = ["finetune", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    arguments += ["--student", str(student), "--plan", str(plan), "--out", str(out)]
    relaunch_under_torchrun(settings.launch, "finetune", arguments)
    train = settings.finetune
    with training_run("finetune", settings, ("launch", "finetune")) as tracker:
        chosen = read_plan(plan)
        if not student.is_file():
            raise FeatherFaceError(f"{student}: student checkpoint not found (run distill first)")
        model = load_checkpoint(student)
        student_params = params_total(model)
        run_params = {
            "finetune": asdict(train),
            "plan": chosen,
            "student_sha256": file_sha256(student),
            "code_sha256": code_fingerprint(__name__),
        }
        prune_to_plan(model, chosen, train, prepare_dir, out / "soft", run_params)
        extra = {
            "student_params_total": student_params,
            "target_params": chosen.get("target_params"),
            "params_ratio": params_total(model) / student_params,
        }
        result = train_network(
            train, model, DetectionLoss(MultiBoxLoss()), prepare_dir, out, run_params,
            tracker.log_metrics,
        )  # fmt: skip
        finish_training(result, prepare_dir, out, tracker, extra)
