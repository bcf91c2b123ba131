"""The whole DAG with the ci-smoke preset, through scripts/retrain.sh, in a copy of the
repository with a local DVC remote: every stage's outputs, the documented metrics, one MLflow run
per stage sharing one pipeline tag, the push, the job summary, promotion, and a second
`dvc repro` that does nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.helpers import REPO_ROOT

STAGES = ("prepare", "teacher", "distill", "prune", "finetune", "export", "evaluate")
MODELS = ("teacher", "student", "pruned", "onnx")
AP_KEYS = ("ap_easy", "ap_medium", "ap_hard")
METRIC_KEYS = {*AP_KEYS, "params_total", "gmacs_640"}


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False
    )


def _copy_repository(destination: Path) -> None:
    """The files git tracks or would track (no .git, .venv, stages, mlruns or DVC cache)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.mark.slow
def test_retrain_script_runs_the_ci_smoke_pipeline(tmp_path: Path, isolated_mlflow: str) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (REPO_ROOT / ".git").exists():
        pytest.skip(f"{REPO_ROOT} is not a git checkout (the copy is made from git ls-files)")
    work, remote, summary = tmp_path / "repo", tmp_path / "remote", tmp_path / "summary.md"
    _copy_repository(work)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DVC_", "FEATHERFACE_PIPELINE"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        GITHUB_STEP_SUMMARY=str(summary),
        GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.invalid",
        GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.invalid",
        FEATHERFACE_REFERENCE=str(tmp_path / "no-reference"),
    )  # fmt: skip
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "copy"],
        ["dvc", "remote", "add", "-d", "local", str(remote)],
    ):
        done = _run(command, work, env)
        assert done.returncode == 0, done.stderr

    retrain = _run(["bash", "scripts/retrain.sh", "ci-smoke"], work, env)
    assert retrain.returncode == 0, retrain.stdout[-3000:] + retrain.stderr[-3000:]

    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    assert tuple(stages) == STAGES
    for name, stage in stages.items():
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]:
            path = entry if isinstance(entry, str) else next(iter(entry))
            assert (work / path).exists(), f"{name}: {path} missing"
    metrics = json.loads((work / "stages/evaluate/metrics.json").read_text())
    assert set(metrics) == set(MODELS)
    assert all(METRIC_KEYS <= set(values) for values in metrics.values())
    assert 120_000 <= metrics["pruned"]["params_total"] <= 180_000
    for model, stage in (("teacher", "teacher"), ("student", "distill"), ("pruned", "finetune")):
        trained = json.loads((work / f"stages/{stage}/metrics.json").read_text())
        assert [metrics[model][key] for key in AP_KEYS] == [trained[key] for key in AP_KEYS]
    printed = " ".join((retrain.stdout + retrain.stderr).split())  # rich wraps long lines
    assert printed.count("val_detections.npz reused") == 3  # evaluate did not run them again

    client = mlflow.MlflowClient(tracking_uri=isolated_mlflow)
    experiment = client.get_experiment_by_name("featherface-ci-smoke")
    runs = [
        run
        for run in client.search_runs([experiment.experiment_id], max_results=500)
        if "mlflow.parentRunId" not in run.data.tags
    ]
    assert sorted(run.data.tags["featherface.stage"] for run in runs) == sorted(STAGES)
    assert len({run.data.tags["featherface.pipeline"] for run in runs}) == 1
    assert any(remote.rglob("*")), "dvc push sent nothing to the remote"
    assert "## Retraining: preset ci-smoke" in summary.read_text()
    assert "ap_hard" in summary.read_text()
    assert "featherface-nano-b" in retrain.stdout + retrain.stderr

    again = _run(["dvc", "repro"], work, env)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout, again.stdout
