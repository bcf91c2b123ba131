"""`featherface runs`: stage runs grouped by pipeline execution, one row per evaluated model."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.runs import executions_table
from featherface.tracking import PIPELINE_ENV, stage_run

AP = {"teacher": (0.55, 0.45, 0.28, 592371), "pruned": (0.42, 0.33, 0.19, 152542)}


def _execution(
    pipeline: str,
    monkeypatch: pytest.MonkeyPatch,
    with_evaluate: bool,
    experiment: str = "runs-test",
) -> None:
    monkeypatch.setenv(PIPELINE_ENV, pipeline)
    for stage in ("prepare", "teacher"):
        with stage_run(stage, {}, experiment=experiment):
            pass
    if not with_evaluate:
        return
    with stage_run("export", {}, experiment=experiment) as run:
        run.log_metrics(
            {"teacher.latency_ms_cpu_640": 104.0, "teacher.ratio_to_retinaface_mnet025": 2.7}
        )
    with stage_run("evaluate", {}, experiment=experiment) as run:
        for name, (easy, medium, hard, count) in AP.items():
            with run.child(name, {"featherface.model": name}) as child:
                child.log_metrics(
                    {"ap_easy": easy, "ap_medium": medium, "ap_hard": hard, "params_total": count}
                )


def test_executions_grouped_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    _execution("first", monkeypatch, with_evaluate=True)
    _execution("second", monkeypatch, with_evaluate=False)
    table = executions_table(mlflow.MlflowClient(), "runs-test", limit=5)
    assert table["pipeline"].tolist() == ["second", "first", "first"]
    stopped = table.iloc[0]
    assert stopped["stages"] == 2 and pd.isna(stopped["model"])
    rows = table[table["pipeline"] == "first"].set_index("model")
    assert rows.loc["teacher", "ap_hard"] == pytest.approx(0.28)
    assert rows.loc["pruned", "params_total"] == 152542
    assert rows.loc["teacher", "latency_ms_cpu_640"] == 104.0
    assert rows.loc["teacher", "latency_ratio"] == pytest.approx(2.7)
    assert pd.isna(rows.loc["pruned", "latency_ms_cpu_640"])  # latency is of the ONNX files
    assert set(rows["stages"]) == {4}
    assert executions_table(mlflow.MlflowClient(), "runs-test", limit=1)["pipeline"].tolist() == [
        "second"
    ]
    assert executions_table(mlflow.MlflowClient(), "absent", limit=1).empty


def test_runs_command_formats(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    empty = CliRunner().invoke(app, ["runs"])
    assert (
        empty.exit_code == 0 and "no pipeline executions in any MLflow experiment" in empty.output
    )
    _execution("only", monkeypatch, with_evaluate=True)
    table = CliRunner().invoke(app, ["runs"])
    assert table.exit_code == 0, table.output
    assert "pipeline" in table.output and "0.55" in table.output and "592371" in table.output
    records = json.loads(CliRunner().invoke(app, ["runs", "--format", "json"]).stdout)
    assert {r["model"] for r in records} == {"teacher", "pruned"}
    csv = CliRunner().invoke(app, ["runs", "--format", "csv", "--limit", "1"]).stdout
    header = "mlflow_experiment,pipeline,started,experiment,commit,stages,model"
    assert csv.splitlines()[0].startswith(header)


def test_runs_lists_every_experiment_unless_one_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A preset logs to its own experiment (ci-smoke: featherface-ci-smoke); the default view
    must show it next to the default pipeline's runs."""
    monkeypatch.chdir(tmp_path)
    _execution("default-run", monkeypatch, with_evaluate=True, experiment="featherface")
    _execution("smoke-run", monkeypatch, with_evaluate=True, experiment="featherface-ci-smoke")
    records = json.loads(CliRunner().invoke(app, ["runs", "--format", "json"]).stdout)
    assert {(r["mlflow_experiment"], r["pipeline"]) for r in records} == {
        ("featherface", "default-run"),
        ("featherface-ci-smoke", "smoke-run"),
    }
    named = CliRunner().invoke(app, ["runs", "--experiment", "featherface", "--format", "json"])
    assert {r["pipeline"] for r in json.loads(named.stdout)} == {"default-run"}
    absent = CliRunner().invoke(app, ["runs", "--experiment", "nope"])
    assert "no pipeline executions in MLflow experiment 'nope'" in absent.output
    assert "featherface-ci-smoke" in absent.output  # says which experiments exist


def test_runs_without_a_store_creates_none(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 0 and "no MLflow store at" in result.output
    assert not (tmp_path / "mlruns").exists()
