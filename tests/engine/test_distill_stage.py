"""`featherface distill` (the distill stage) end to end on a tiny prepared set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from featherface.cli import app
from featherface.models.checkpoint import load_checkpoint
from tests.helpers import prepared_workspace

TINY = """
data:
  synthetic:
    seed: 3
    num_train: 6
    num_val: 3
    max_image_size: 360
    max_faces: 5
    workers: 1
teacher:
  arch: featherface-nano-b
  image_size: 96
  batch_size: 3
  epochs: 1
  num_workers: 0
distill:
  image_size: 96
  batch_size: 3
  epochs: 2
  num_workers: 0
  alpha: 1.0
tracking:
  experiment: distill-test
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return prepared_workspace(tmp_path, monkeypatch, TINY)


def test_distill_needs_the_teacher_unless_alpha_is_zero(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["distill"])
    assert result.exit_code == 1
    assert "stages/teacher/model.pt: teacher checkpoint not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (workspace / "stages" / "distill" / "model.pt").exists()

    Path("params.yaml").write_text(TINY.replace("alpha: 1.0", "alpha: 0.0"))
    result = CliRunner().invoke(app, ["distill"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((workspace / "stages" / "distill" / "metrics.json").read_text())
    assert "teacher_params_total" not in metrics
    history = pd.read_csv(workspace / "stages" / "distill" / "history.csv")
    assert (history[["train/kd_cls", "train/kd_feat"]] == 0).all().all()


def test_distill_trains_the_student_from_the_teacher(workspace: Path) -> None:
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    result = CliRunner().invoke(app, ["distill"])
    assert result.exit_code == 0, result.output
    out = workspace / "stages" / "distill"
    metrics = json.loads((out / "metrics.json").read_text())
    student = load_checkpoint(out / "model.pt")
    teacher = load_checkpoint(workspace / "stages" / "teacher" / "model.pt")
    assert metrics["params_total"] == sum(p.numel() for p in student.parameters())
    assert metrics["teacher_params_total"] == sum(p.numel() for p in teacher.parameters())
    assert metrics["compression"] == pytest.approx(
        metrics["teacher_params_total"] / metrics["params_total"]
    )
    assert {"ap_easy", "ap_medium", "ap_hard", "val_loss"} <= set(metrics)
    # The saved student holds no adapter or teacher weights.
    state = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert not any(key.startswith(("teacher.", "adapters.")) for key in state)

    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    for term in ("kd_cls", "kd_box", "kd_landm", "kd_feat", "loss_cls"):
        assert f"train/{term}" in history and f"val/{term}" in history
    assert (history["train/kd_cls"] > 0).all() and (history["train/kd_feat"] > 0).all()

    import mlflow

    runs = mlflow.search_runs(experiment_names=["distill-test"], output_format="list")
    (run,) = [r for r in runs if r.data.tags["featherface.stage"] == "distill"]
    assert "train/kd_feat" in run.data.metrics and "compression" in run.data.metrics

    # A different teacher: the student's working files are stale and training starts again.
    before = (out / "last.pt").stat().st_mtime_ns
    assert CliRunner().invoke(app, ["distill"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns == before
    Path("params.yaml").write_text(TINY.replace("  epochs: 1\n", "  epochs: 2\n"))
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert CliRunner().invoke(app, ["distill"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns != before
