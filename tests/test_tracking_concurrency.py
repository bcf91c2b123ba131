"""Concurrent stage runs against one MLflow store: no run may be lost.

Parallel experiments start ``featherface`` stages in separate processes at the same moment. On a
new sqlite store both processes used to create MLflow's tables (``table ... already exists``),
and on an existing store both used to create a new experiment (``UNIQUE constraint failed``), so
one of the two runs was lost. These tests race two real processes: both wait at a barrier and
then open :func:`featherface.tracking.stage_run` together. Each race is repeated a few times
because a single one can be won by chance. The processes are started once for the module, and
each race sets their environment itself (the ``isolated_mlflow`` fixture does not reach them).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from featherface import tracking

ROUNDS = 3
WORKERS = 2
#: Seconds to wait for the workers (a barrier, a result) before giving up: long enough for a
#: busy 2-core machine to start them and create a store, short enough that a hang fails.
WAIT_S = 120.0


@dataclass(frozen=True)
class Race:
    """One race: the environment both workers run under and the experiment they log to.

    ``None`` in ``env`` removes the variable (``MLFLOW_TRACKING_URI`` for the default store).
    """

    env: Mapping[str, str | None]
    experiment: str


def _fast_sqlite() -> None:
    """Turn off fsync for sqlite in this worker process.

    Creating MLflow's tables runs dozens of migrations, each committed with an fsync, and takes
    seconds on a busy disk. Without the fsyncs the race is the same (look for the tables, then
    create them) and the tests stay short. Only the worker processes are affected.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _no_sync(connection: Any, _record: Any) -> None:
        if type(connection).__module__.startswith("sqlite3"):
            connection.execute("PRAGMA synchronous=OFF")


def _apply(env: Mapping[str, str | None]) -> None:
    """Set (or, for ``None``, remove) the environment variables of ``env`` in this process."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _summary(error: BaseException) -> str:
    """The exception's type and first line, plus the innermost frame, for a failure message."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    first = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first} (at {Path(frame.filename).name}:{frame.lineno})"


def _worker(index: int, inbox: Any, barrier: Any, results: Any) -> None:
    """Serve jobs ``(races, setup_uri)`` from ``inbox`` until ``None``, in step with the other
    worker, putting ``(race number, worker, failure or None)`` on ``results`` for each race.

    ``setup_uri``, when given, is a store that worker 0 creates before the first race (the
    existing-store case) while the other worker waits at the barrier.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    _fast_sqlite()
    import mlflow  # imported before any race, so that both workers start it equally warm

    while (job := inbox.get()) is not None:
        races, setup_uri = job
        if setup_uri is not None and index == 0:
            mlflow.MlflowClient(setup_uri).search_experiments(max_results=1)
        barrier.wait(WAIT_S)
        for number, race in enumerate(races):
            _apply(race.env)
            barrier.wait(WAIT_S)
            try:
                with tracking.stage_run("prepare", {"worker": index}, experiment=race.experiment):
                    pass
            except Exception as error:
                results.put((number, index, _summary(error)))
            else:
                results.put((number, index, None))
    # Skip the interpreter's teardown, which takes seconds with MLflow loaded; every run has
    # ended and the results are flushed, so nothing is lost.
    results.close()
    results.join_thread()
    os._exit(0)


class Racers:
    """Two spawned worker processes, shared by the tests of this module because starting one
    (Python, then MLflow) takes seconds on a busy machine."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._barrier = context.Barrier(WORKERS)
        self._results = context.Queue()
        self._inboxes = [context.Queue() for _ in range(WORKERS)]
        self._workers = [
            context.Process(
                target=_worker,
                args=(index, inbox, self._barrier, self._results),
                daemon=True,
            )
            for index, inbox in enumerate(self._inboxes)
        ]
        for worker in self._workers:
            worker.start()

    def run(self, races: Sequence[Race], setup_uri: str | None = None) -> list[str]:
        """Race the workers through ``races``; return a description of every failure."""
        for inbox in self._inboxes:
            inbox.put((list(races), setup_uri))
        deadline = time.monotonic() + WAIT_S * (len(races) + 1)
        outcomes = []
        while len(outcomes) < WORKERS * len(races):
            try:
                outcomes.append(self._results.get(timeout=1.0))
            except queue.Empty:
                dead = [index for index, w in enumerate(self._workers) if not w.is_alive()]
                if dead or time.monotonic() > deadline:
                    pytest.fail(f"workers {dead} died or timed out after {len(outcomes)} results")
        return [
            f"race {number}, worker {index}: {error}"
            for number, index, error in sorted(outcomes, key=lambda outcome: outcome[:2])
            if error is not None
        ]

    def close(self) -> None:
        """Stop the workers (killing any that hang)."""
        for inbox in self._inboxes:
            inbox.put(None)
        for worker in self._workers:
            worker.join(WAIT_S)
            if worker.is_alive():
                worker.kill()
                worker.join()


@pytest.fixture(scope="module")
def racers() -> Iterator[Racers]:
    workers = Racers()
    yield workers
    workers.close()


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository folder whose default store the first test that races on it creates."""
    root = tmp_path_factory.mktemp("existing")
    (root / "mlruns").mkdir()
    return root


def _default_uri(root: Path) -> str:
    """The default store of the repository folder ``root`` (whatever this process's
    ``MLFLOW_TRACKING_URI``)."""
    return f"sqlite:///{root.resolve() / 'mlruns' / 'mlflow.db'}"


def _recorded_runs(race: Race) -> int:
    """How many runs the experiment of ``race`` holds in the store it logged to."""
    from mlflow import MlflowClient

    uri = race.env.get("MLFLOW_TRACKING_URI") or _default_uri(Path(race.env["DVC_ROOT"] or ""))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(race.experiment)
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


def _check(races: Sequence[Race], failures: list[str]) -> None:
    """Every worker succeeded in every race, and every race recorded one run per worker."""
    failed = {failure.split(",")[0] for failure in failures}
    assert not failures, f"failed {len(failed)} of {len(races)} races:\n" + "\n".join(failures)
    assert [_recorded_runs(race) for race in races] == [WORKERS] * len(races)


def test_parallel_stage_runs_on_a_new_default_store(racers: Racers, tmp_path: Path) -> None:
    """Two stages opening runs together on a store nobody has created yet both get a run."""
    races = []
    for number in range(ROUNDS):
        root = tmp_path / f"repo{number}"
        root.mkdir()
        races.append(Race({"MLFLOW_TRACKING_URI": None, "DVC_ROOT": str(root)}, "featherface"))
    _check(races, racers.run(races))


def test_parallel_stage_runs_create_a_new_experiment_once(
    racers: Racers, existing_store: Path
) -> None:
    """Two stages opening runs together in an experiment nobody has created yet, on an existing
    default store, both log into that one experiment."""
    env = {"MLFLOW_TRACKING_URI": None, "DVC_ROOT": str(existing_store)}
    races = [Race(env, f"parallel-{number}") for number in range(ROUNDS)]
    _check(races, racers.run(races, setup_uri=_default_uri(existing_store)))


def test_parallel_stage_runs_create_a_new_experiment_once_on_any_store(
    racers: Racers, existing_store: Path, tmp_path: Path
) -> None:
    """The same race on a sqlite store named by ``MLFLOW_TRACKING_URI`` rather than the
    repository's default one: it is locked beside its database file just the same. (A server
    gets no lock; a lost race to create the experiment there is read back, see
    ``test_losing_the_race_to_create_an_experiment_uses_the_winners``.)"""
    env = {
        "MLFLOW_TRACKING_URI": _default_uri(existing_store),
        "DVC_ROOT": str(tmp_path),  # another folder: the store is not this root's default one
    }
    races = [Race(env, f"shared-{number}") for number in range(ROUNDS)]
    _check(races, racers.run(races, setup_uri=env["MLFLOW_TRACKING_URI"]))
