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
- Logging is explicit: nothing here runs at import time, and ``mlflow`` is imported lazily;
  this module, the model registry (:mod:`featherface.export.registry`) and
  :mod:`featherface.runs` are the only ones that import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TAG_PREFIX = "featherface."


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
    store = (root or repo_root()) / "mlruns"
    return f"sqlite:///{store / 'mlflow.db'}"


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


def _experiment_id(mlflow: Any, name: str, root: Path) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root(root) / name
    location.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=location.as_uri())


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
    mlflow.set_tracking_uri(tracking_uri(root))
    experiment_id = _experiment_id(mlflow, experiment, root)
    run_tags = {**stage_tags(stage, params, root), **dict(tags or {})}
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=run_tags):
        tracker = MlflowTracker(mlflow, experiment_id, run_tags)
        tracker.log_params(params)
        yield tracker
