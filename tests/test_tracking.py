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
    with tracking.stage_run("prepare", params, experiment="unit", tags={"extra": "x"}) as run:
        assert run.enabled
        run.log_metrics({"images": 5, "note": "text is skipped", "nested": {"a": 1}})
    (found,) = mlflow.search_runs(experiment_names=["unit"], output_format="list")
    assert found.data.params == {"data.seed": "3"}
    assert found.data.metrics == {"images": 5.0}
    assert found.data.tags["featherface.stage"] == "prepare"
    assert found.data.tags["featherface.dvc_experiment"] == "exp-test"
    assert found.data.tags["featherface.params_hash"] == tracking.params_hash(params)
    assert found.data.tags["mlflow.runName"] == "prepare"
    assert found.data.tags["extra"] == "x"


def test_child_runs_nest_and_carry_the_stage_tags() -> None:
    import mlflow

    with tracking.stage_run("prune", {}, experiment="nested") as run:
        with run.child("trial-0", {"trial": "0"}) as trial:
            trial.log_metrics({"loss": 1.5})
    runs = mlflow.search_runs(experiment_names=["nested"], output_format="list")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["featherface.stage"] == "prune" and child.data.tags["trial"] == "0"
    assert child.data.metrics == {"loss": 1.5}


def test_disabled_tracking_logs_nothing() -> None:
    with tracking.stage_run("prepare", {}, experiment="off", enabled=False) as run:
        assert not run.enabled
        run.log_metrics({"images": 5})
        with run.child("trial-0") as child:
            child.log_params({"a": 1})
    import mlflow

    assert mlflow.get_experiment_by_name("off") is None


def test_only_rank_zero_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("RANK", "1")
    with tracking.stage_run("teacher", {}, experiment="rank1") as run:
        assert not run.enabled
        run.log_metrics({"loss": 1.0})
    assert mlflow.get_experiment_by_name("rank1") is None


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
    by_stage = {}
    for run in sorted(runs, key=lambda run: run.info.start_time):
        by_stage.setdefault(run.data.tags["featherface.stage"], []).append(
            run.data.tags["featherface.pipeline"]
        )
    (first_prepare, second_prepare), (teacher,) = by_stage["prepare"], by_stage["teacher"]
    assert first_prepare == teacher  # same params.yaml: one execution
    assert second_prepare != first_prepare  # params.yaml changed: another execution


def test_only_tracking_the_registry_and_runs_import_mlflow() -> None:
    """Library code gets a tracker or a callback; three modules own MLflow."""
    import ast

    package = Path(tracking.__file__).parent
    owners = {"tracking.py", "export/registry.py", "runs.py"}
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "mlflow" for name in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == owners


def test_default_store_is_locked_while_the_experiment_is_found_or_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store creation and experiment creation happen under ``mlruns/.mlflow.lock`` (another
    process trying to take it meanwhile would wait); the lock is released for the run."""
    import fcntl

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    lock = tmp_path / "mlruns" / tracking.STORE_LOCK
    find_or_create = tracking._experiment_id

    def try_lock() -> bool:
        """Whether an exclusive lock on the lock file can be taken now (through another open
        file, which ``flock`` treats like another process)."""
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return True

    held = []

    def spy(mlflow: object, name: str, root: Path) -> str:
        held.append(not try_lock())
        return find_or_create(mlflow, name, root)

    monkeypatch.setattr(tracking, "_experiment_id", spy)
    with tracking.stage_run("prepare", {}, experiment="locked"):
        assert try_lock()
    # mlflow.set_tracking_uri exported MLFLOW_TRACKING_URI: still the default store, still locked.
    with tracking.stage_run("teacher", {}, experiment="locked-too"):
        assert try_lock()
    assert held == [True, True]


def test_only_local_sqlite_stores_get_a_lock(tmp_path: Path) -> None:
    """A server other machines use is not serialised by a local lock, so none is taken (and no
    lock file is made); a sqlite file named by ``MLFLOW_TRACKING_URI`` is locked beside it."""
    with tracking._store_lock("http://tracking.example:5000"):
        pass
    assert list(tmp_path.iterdir()) == []
    with tracking._store_lock(f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"):
        assert (tmp_path / "elsewhere" / tracking.STORE_LOCK).is_file()


class _RacedMlflow:
    """An ``mlflow`` stand-in whose experiment another process creates between this process's
    look-up and its ``create_experiment`` call, which fails with ``error``."""

    def __init__(self, error: Exception, created_by_other: bool = True) -> None:
        self.error = error
        self.lookups = 0
        self.created_by_other = created_by_other

    def get_experiment_by_name(self, name: str) -> object | None:
        from types import SimpleNamespace

        self.lookups += 1
        if self.lookups == 1 or not self.created_by_other:
            return None
        return SimpleNamespace(experiment_id="17")

    def create_experiment(self, name: str, artifact_location: str) -> str:
        raise self.error


def _integrity_error() -> Exception:
    """A database ``IntegrityError`` as SQLAlchemy raises it, with its DBAPI error as cause."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError

    cause = sqlite3.IntegrityError("UNIQUE constraint failed: experiments.name")
    try:
        raise IntegrityError("INSERT INTO experiments", {}, cause) from cause
    except IntegrityError as error:
        return error


def test_losing_the_race_to_create_an_experiment_uses_the_winners(tmp_path: Path) -> None:
    """Another process created the experiment first (any store, so also a tracking server):
    the "already exists" error, wrapped by MLflow or raw from the database, is not fatal."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

    wrapped = MlflowException("Experiment(name=x) already exists.", RESOURCE_ALREADY_EXISTS)
    for error in (wrapped, _integrity_error()):
        raced = _RacedMlflow(error)
        assert tracking._experiment_id(raced, "x", tmp_path) == "17"
        assert raced.lookups == 2


def test_other_errors_creating_an_experiment_are_raised(tmp_path: Path) -> None:
    """Only "already exists" is forgiven, and only when the experiment can then be found."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS

    invalid = MlflowException("bad name", INVALID_PARAMETER_VALUE)
    with pytest.raises(MlflowException, match="bad name"):
        tracking._experiment_id(_RacedMlflow(invalid), "x", tmp_path)
    # "Already exists" yet not found by name (deleted meanwhile): the original error stands.
    exists = MlflowException("already exists", RESOURCE_ALREADY_EXISTS)
    with pytest.raises(MlflowException, match="already exists"):
        tracking._experiment_id(_RacedMlflow(exists, created_by_other=False), "x", tmp_path)


def test_an_interrupted_stage_run_ends_killed_not_running(tmp_path: Path) -> None:
    """Ctrl-C (how DVC stops a stage) and SIGTERM end the run as KILLED; before, a killed
    stage's run stayed RUNNING forever."""
    import os
    import subprocess
    import sys
    import textwrap

    import mlflow

    with pytest.raises(KeyboardInterrupt):
        with tracking.stage_run("teacher", {}, experiment="killed"):
            raise KeyboardInterrupt
    script = textwrap.dedent(
        """
        import os, signal, time
        from featherface import tracking
        with tracking.stage_run("distill", {}, experiment="killed"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
    )
    env = {**os.environ, "DVC_ROOT": str(tmp_path)}
    child = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=120
    )
    assert child.returncode != 0 and b"KeyboardInterrupt" in child.stderr
    runs = mlflow.search_runs(experiment_names=["killed"], output_format="list")
    assert sorted(run.info.status for run in runs) == ["KILLED", "KILLED"]
