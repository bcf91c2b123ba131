"""MLflow conventions: store location, repo root, tags, one run per stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from featherface import tracking


def test_uri_defaults_to_sqlite_under_repo_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.repo_root() == tmp_path.resolve()
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert tracking.artifact_root() == tmp_path.resolve() / "mlruns" / "artifacts"


def test_environment_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri() == "http://tracking.example:5000"


def test_repo_root_is_found_above_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert tracking.repo_root(nested) == tmp_path.resolve()


def test_params_hash_is_order_independent() -> None:
    assert tracking.params_hash({"a": 1, "b": {"c": 2}}) == tracking.params_hash(
        {"b": {"c": 2}, "a": 1}
    )
    assert tracking.params_hash({"a": 1}) != tracking.params_hash({"a": 2})
    assert len(tracking.params_hash({})) == 12


def test_flatten() -> None:
    assert tracking.flatten({"data": {"synthetic": {"seed": 0}, "source": "x"}}) == {
        "data.synthetic.seed": 0,
        "data.source": "x",
    }


def test_stage_run_logs_params_and_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    params = {"data": {"seed": 3}}
    with tracking.stage_run("prepare", params, experiment="unit") as run:
        assert run is mlflow
        mlflow.log_metric("images", 5)
    (found,) = mlflow.search_runs(experiment_names=["unit"], output_format="list")
    assert found.data.params == {"data.seed": "3"}
    assert found.data.metrics == {"images": 5.0}
    assert found.data.tags["featherface.stage"] == "prepare"
    assert found.data.tags["featherface.dvc_experiment"] == "exp-test"
    assert found.data.tags["featherface.params_hash"] == tracking.params_hash(params)
    assert found.data.tags["mlflow.runName"] == "prepare"


def test_disabled_tracking_logs_nothing() -> None:
    with tracking.stage_run("prepare", {}, experiment="off", enabled=False) as run:
        assert run is None
    import mlflow

    assert mlflow.get_experiment_by_name("off") is None


def test_pipeline_id_shared_by_one_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    params = tmp_path / "params.yaml"
    params.write_text("prune:\n  rate: 0.6\n")
    first = tracking.pipeline_id("abc", "workspace", params)
    assert first == tracking.pipeline_id("abc", "workspace", params) and len(first) == 12
    assert first != tracking.pipeline_id("abd", "workspace", params)
    assert first != tracking.pipeline_id("abc", "exp-1", params)
    params.write_text("prune:\n  rate: 0.65\n")
    assert first != tracking.pipeline_id("abc", "workspace", params)
    monkeypatch.setenv(tracking.PIPELINE_ENV, "run-7")
    assert tracking.pipeline_id("abc", "workspace", params) == "run-7"


def test_stage_runs_of_one_execution_share_the_pipeline_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    for stage in ("prepare", "teacher"):
        with tracking.stage_run(stage, {}, experiment="grouped"):
            pass
    (tmp_path / "params.yaml").write_text("a: 2\n")
    with tracking.stage_run("prepare", {}, experiment="grouped"):
        pass
    runs = mlflow.search_runs(experiment_names=["grouped"], output_format="list")
    tags = sorted(run.data.tags["featherface.pipeline"] for run in runs)
    assert len(set(tags)) == 2 and tags.count(tags[0]) in (1, 2)
