"""The command line: listed commands exist, `prepare` end to end, one-line errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from tests.helpers import REPO_ROOT

TINY_PARAMS = """
data:
  source: synthetic
  synthetic:
    seed: 1
    num_train: 6
    num_val: 4
    max_image_size: 400
    max_faces: 6
    workers: 1
tracking:
  experiment: cli-test
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("prepare", "data"):
        assert command in result.output
    data_help = runner.invoke(app, ["data", "--help"])
    assert "download" in data_help.output and "validate" in data_help.output


def test_prepare_end_to_end_on_a_tiny_synthetic_set(
    runner: CliRunner, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(TINY_PARAMS)
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "stages" / "prepare"
    images = pd.read_parquet(out / "images.parquet")
    faces = pd.read_parquet(out / "faces.parquet")
    statistics = json.loads((out / "stats.json").read_text())
    assert len(images) == 10
    assert statistics["train"]["images"] == 6 and statistics["val"]["images"] == 4
    assert statistics["train"]["faces"] + statistics["val"]["faces"] == len(faces)
    assert statistics["val"]["easy"] <= statistics["val"]["medium"] <= statistics["val"]["hard"]
    assert json.loads((out / "validation.json").read_text())["success"] is True
    assert (out / "face_heights.png").stat().st_size > 0
    assert json.loads((out / "dataset.json").read_text()) == {
        "source": "synthetic",
        "root": "synthetic",
    }
    assert (out / "synthetic" / "wider_face_split" / "wider_face_val_bbx_gt.txt").is_file()
    assert not [p for p in tmp_path.glob("stages/.*")], "temporary folders left behind"

    import mlflow

    (run,) = mlflow.search_runs(experiment_names=["cli-test"], output_format="list")
    assert run.data.tags["featherface.stage"] == "prepare"
    assert run.data.metrics["val.images"] == 4.0
    assert run.data.params["data.synthetic.num_train"] == "6"
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"stats.json", "validation.json", "validation.md", "face_heights.png"} <= artifacts

    validate = runner.invoke(app, ["data", "validate", str(out / "synthetic")])
    assert validate.exit_code == 0, validate.output


def test_bad_params_give_one_line_and_exit_1(
    runner: CliRunner, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("data:\n  synthetic:\n    sead: 1\n")
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 1
    assert "unknown key(s) ['data.synthetic.sead']" in result.output
    assert "Traceback" not in result.output
    assert not Path("stages").exists() or not any(Path("stages").iterdir())


def test_failed_prepare_leaves_previous_outputs_untouched(
    runner: CliRunner, wider_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    split_file = wider_folder / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    settings = f"data:\n  source: widerface\n  widerface_root: {wider_folder}\n"
    Path("params.yaml").write_text(settings + "tracking:\n  enabled: false\n")
    assert runner.invoke(app, ["prepare"]).exit_code == 0
    before = sorted(p.name for p in Path("stages/prepare").iterdir())
    split_file.write_text(split_file.read_text().replace("\n3\n", "\n4\n"))
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 1
    assert (
        "wider_face_val_bbx_gt.txt:2: count line says 4 faces but the file ends after 3"
        in result.output
    )
    assert sorted(p.name for p in Path("stages/prepare").iterdir()) == before
    assert not [p for p in Path("stages").iterdir() if p.name.startswith(".")]


def test_validate_reports_bad_rows_with_exit_1(runner: CliRunner, wider_folder: Path) -> None:
    split_file = wider_folder / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    split_file.write_text(split_file.read_text().replace("10 12 30 40 0", "10 12 30 40 7"))
    result = runner.invoke(app, ["data", "validate", str(wider_folder)])
    assert result.exit_code == 1
    assert "blur in 0..2" in result.output
    # with the default `drop` too, each failing row is named by file and line
    assert "wider_face_train_bbx_gt.txt:3: faces: " in result.output
    strict = runner.invoke(app, ["data", "validate", str(wider_folder), "--on-bad-rows", "fail"])
    assert strict.exit_code == 1
    assert "wider_face_train_bbx_gt.txt:3: faces: check failed: blur in 0..2" in strict.output


def test_console_script_is_installed() -> None:
    import shutil
    import subprocess

    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which("featherface", path=search_path)
    assert executable is not None
    result = subprocess.run(
        [executable, "--help"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0 and "prepare" in result.stdout
