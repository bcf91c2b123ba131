"""MLflow conventions, in one place.

- Tracking URI: ``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo root>/mlruns/mlflow.db``
  with artifacts under ``<repo root>/mlruns/artifacts``. The repo root is ``$DVC_ROOT`` when DVC
  runs the stage (so queued experiments, which run in temporary copies, log to the same store),
  else the nearest folder above the working directory holding ``dvc.yaml`` or ``.git``.
- One run per stage execution, tagged ``featherface.stage``, ``featherface.git_commit``,
  ``featherface.dvc_experiment``, ``featherface.params_hash`` (SHA-256 of the stage's
  parameters, 12 hex digits) and ``featherface.pipeline`` (:func:`pipeline_id`, shared by the
  stages of one pipeline execution).
- Only rank 0 of a ``torchrun`` job logs; the other ranks get the no-op :class:`Tracker`.
- Stages may start at the same moment in separate processes (parallel experiments). Creating
  the default store and creating an experiment are serialised by an exclusive lock on
  ``<repo root>/mlruns/.mlflow.lock``; on any store, losing the race to create an experiment
  means using the one the winner created.
- Logging is explicit: nothing here runs at import time, and ``mlflow`` is imported lazily;
  this module, the model registry (:mod:`featherface.export.registry`) and
  :mod:`featherface.runs` are the only ones that import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TAG_PREFIX = "featherface."
STORE_LOCK = ".mlflow.lock"


def repo_root(start: Path | None = None) -> Path:
    """``$DVC_ROOT``, else the nearest folder above ``start`` with ``dvc.yaml`` or ``.git``."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").exists() or (folder / ".git").exists():
            return folder
    return start


def tracking_uri(root: Path | None = None) -> str:
    """The MLflow tracking URI under the conventions above."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return _default_uri(root or repo_root())


def _default_uri(root: Path) -> str:
    """The sqlite store under ``root``, used when ``MLFLOW_TRACKING_URI`` is unset."""
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def artifact_root(root: Path | None = None) -> Path:
    """Folder for artifacts of experiments created by this package."""
    return (root or repo_root()) / "mlruns" / "artifacts"


def params_hash(params: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the parameters as canonical JSON."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_commit(root: Path) -> str:
    """The commit checked out at ``root`` (``DVC_EXP_BASELINE_REV`` under DVC), or ``unknown``."""
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, the form MLflow params take."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


PIPELINE_ENV = "FEATHERFACE_PIPELINE_RUN"


def pipeline_id(commit: str, experiment: str, params_file: Path) -> str:
    """What the stage runs of one pipeline execution share: ``$FEATHERFACE_PIPELINE_RUN`` when
    set (``featherface exp run`` and ``scripts/retrain.sh`` set it), else the first 12 hex digits
    of SHA-256 over the git commit, the DVC experiment name and the bytes of ``params_file``.
    Stages that DVC runs in one ``dvc repro`` or ``dvc exp run`` see the same three, so they
    share the id; a rerun with other parameters or at another commit gets a new one."""
    if os.environ.get(PIPELINE_ENV):
        return os.environ[PIPELINE_ENV]
    content = params_file.read_bytes() if params_file.is_file() else b""
    digest = hashlib.sha256(f"{commit}\n{experiment}\n".encode() + content)
    return digest.hexdigest()[:12]


def stage_tags(stage: str, params: Mapping[str, Any], root: Path) -> dict[str, str]:
    """The tags every stage run carries (``params.yaml`` of the working folder identifies the
    pipeline execution, see :func:`pipeline_id`)."""
    commit = git_commit(root)
    experiment = os.environ.get("DVC_EXP_NAME", "workspace")
    return {
        f"{TAG_PREFIX}stage": stage,
        f"{TAG_PREFIX}git_commit": commit,
        f"{TAG_PREFIX}dvc_experiment": experiment,
        f"{TAG_PREFIX}params_hash": params_hash(params),
        f"{TAG_PREFIX}pipeline": pipeline_id(commit, experiment, Path.cwd() / "params.yaml"),
    }


def is_rank_zero() -> bool:
    """Whether this process may log: always, except on the non-zero ranks of ``torchrun``."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``.mlflow.lock`` next to the database while ``uri`` is a local
    sqlite store (``sqlite:///PATH``: the default one, or one named by ``MLFLOW_TRACKING_URI``).

    MLflow creates a new sqlite store (tables, then dozens of migrations) without any guard, so
    two processes opening the same new store both try it and one fails with ``table ... already
    exists``; two processes creating the same experiment collide likewise. The lock (``flock``,
    released when the file closes, even if the process dies) makes the processes of this
    machine take turns. Any other store may be a server shared by many machines, where a local
    lock proves nothing, so it gets no lock (and no lock file); neither does a platform without
    ``fcntl`` (Windows). A lost race to create an experiment there is handled by
    :func:`_experiment_id`.
    """
    if os.name != "posix" or not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri.removeprefix("sqlite:///")).parent / STORE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _already_exists(error: BaseException) -> bool:
    """Whether ``error`` says that the experiment being created exists already.

    MLflow reports it as an ``MlflowException`` with error code ``RESOURCE_ALREADY_EXISTS``: the
    SQL stores wrap the ``IntegrityError`` of the unique name constraint in one, and a tracking
    server answers with that code. A database ``IntegrityError`` that escapes the wrapping (or
    is wrapped otherwise) is recognised anywhere in the chain of causes.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "error_code", None) == "RESOURCE_ALREADY_EXISTS":
            return True
        if type(current).__name__ == "IntegrityError":
            return True
        current = current.__cause__ or current.__context__
    return False


def _experiment_id(mlflow: Any, name: str, root: Path) -> str:
    """The id of the experiment ``name``, created (artifacts under :func:`artifact_root`) when
    missing.

    Another process may create it between the look-up and the creation; the creation then fails
    as already existing, and the experiment it created is read back and used, so both processes
    log into the one experiment instead of one of them losing its run.
    """
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root(root) / name
    location.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow.create_experiment(name, artifact_location=location.as_uri())
    except Exception as error:
        if not _already_exists(error):
            raise
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``metrics`` that are numbers, flags as 0 or 1 (``None``, text and nested
    mappings left out)."""
    return {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}


class Tracker:
    """Where a stage reports its parameters, metrics and files: this base class drops everything
    (tracking off, or a non-zero rank); :class:`MlflowTracker` logs to MLflow.

    Library code receives a tracker or a plain callback, never the ``mlflow`` module.
    """

    enabled = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log ``params`` (nested mappings flattened to dotted names)."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numbers and flags of ``metrics`` (others are skipped) at ``step``."""

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifacts (under ``folder``)."""

    def log_artifacts(self, directory: Path, folder: str | None = None) -> None:
        """Copy every file below ``directory`` into the run's artifacts (under ``folder``)."""

    @contextmanager
    def child(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[Tracker]:
        """A nested run (a Bayesian trial, one evaluated model); yields its tracker."""
        yield self


class MlflowTracker(Tracker):
    """A tracker logging to the active MLflow run; :meth:`child` opens nested runs that carry
    the parent's ``featherface.*`` tags plus their own."""

    enabled = True

    def __init__(self, mlflow: Any, experiment_id: str, tags: Mapping[str, str]) -> None:
        self._mlflow = mlflow
        self._experiment_id = experiment_id
        self._tags = dict(tags)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._mlflow.log_params(flatten(params))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        values = _numbers(metrics)
        if values:
            self._mlflow.log_metrics(values, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_artifacts(self, directory: Path, folder: str | None = None) -> None:
        self._mlflow.log_artifacts(str(directory), artifact_path=folder)

    @contextmanager
    def child(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[Tracker]:
        run_tags = {**self._tags, **dict(tags or {})}
        with self._mlflow.start_run(
            run_name=name, nested=True, experiment_id=self._experiment_id, tags=run_tags
        ):
            yield MlflowTracker(self._mlflow, self._experiment_id, run_tags)


@contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    experiment: str = "featherface",
    enabled: bool = True,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution and yield its :class:`Tracker`.

    The stage's parameters are logged flattened (``data.synthetic.seed``) and the run carries
    the tags of the module docstring plus ``tags``. With ``enabled=False``, or on a non-zero
    rank under ``torchrun`` (only rank 0 logs), it yields the no-op :class:`Tracker`.
    """
    if not (enabled and is_rank_zero()):
        yield Tracker()
        return
    import mlflow

    root = repo_root()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        # The first request to a store creates it (tables and migrations), so the look-up in
        # _experiment_id initialises a new store while the lock is held.
        experiment_id = _experiment_id(mlflow, experiment, root)
    run_tags = {**stage_tags(stage, params, root), **dict(tags or {})}
    with (
        _interrupted_on_sigterm(),
        mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=run_tags),
    ):
        tracker = MlflowTracker(mlflow, experiment_id, run_tags)
        tracker.log_params(params)
        try:
            yield tracker
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise


@contextmanager
def _interrupted_on_sigterm() -> Iterator[None]:
    """Turn ``SIGTERM`` (what ``kill`` and job schedulers send) into ``KeyboardInterrupt`` while
    a run is open, as ``SIGINT`` (Ctrl-C, how DVC stops a stage) already is, so the run ends as
    ``KILLED`` instead of staying ``RUNNING`` forever. ``SIGKILL`` cannot be caught; such a run
    stays ``RUNNING``. Only the main thread can install a handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
