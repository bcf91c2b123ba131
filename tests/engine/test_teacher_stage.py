"""`featherface teacher` (the teacher stage) end to end on a tiny prepared set."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import featherface.stages.teacher as teacher_module
from featherface.cli import app
from featherface.models.checkpoint import load_checkpoint
from tests.helpers import prepared_workspace

TINY = """
data:
  synthetic:
    seed: 2
    num_train: 6
    num_val: 3
    max_image_size: 360
    max_faces: 5
    workers: 1
teacher:
  arch: featherface-nano-b
  image_size: 96
  batch_size: 3
  epochs: 2
  num_workers: 0
tracking:
  experiment: teacher-test
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return prepared_workspace(tmp_path, monkeypatch, TINY)


def test_train_writes_model_metrics_and_history(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(app, ["teacher"])
    assert result.exit_code == 0, result.output
    out = workspace / "stages" / "teacher"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {
        "params_total", "params_paper", "val_loss", "ap_easy", "ap_medium", "ap_hard", "machine"
    }  # fmt: skip
    assert set(metrics["machine"]) == {"cpu", "torch_cpu_capability"}
    model = load_checkpoint(out / "model.pt")
    assert metrics["params_total"] == sum(p.numel() for p in model.parameters())
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert {"train/loss", "train/loss_cls", "val/loss", "lr", "images_per_s"} <= set(history)

    import mlflow

    (run,) = mlflow.search_runs(experiment_names=["teacher-test"], output_format="list")[:1]
    assert run.data.tags["featherface.stage"] == "teacher"
    assert "val/loss" in run.data.metrics and "ap_hard" in run.data.metrics
    assert run.data.tags["featherface.cpu"] == metrics["machine"]["cpu"]

    # Same parameters and code: the finished run is resumed, not retrained, and the outputs DVC
    # removes before running a stage are written again.
    before = (out / "last.pt").stat().st_mtime_ns
    for name in ("model.pt", "history.csv", "metrics.json"):
        (out / name).unlink()
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns == before
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]
    assert (out / "model.pt").is_file() and (out / "metrics.json").is_file()

    # Changed code: the working files of the old code are discarded.
    monkeypatch.setattr(teacher_module, "code_fingerprint", lambda *modules: "other code")
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns != before

    # Changed data with the same parameters and code: discarded as well.
    before = (out / "last.pt").stat().st_mtime_ns
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns == before  # same key again: resumed
    faces = pd.read_parquet("stages/prepare/faces.parquet")
    faces.iloc[:-1].to_parquet("stages/prepare/faces.parquet")
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert (out / "last.pt").stat().st_mtime_ns != before

    # Changed parameters: the old working files are discarded and training starts again.
    Path("params.yaml").write_text(TINY.replace("epochs: 2", "epochs: 1"))
    assert CliRunner().invoke(app, ["teacher"]).exit_code == 0
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0]
