"""Recent pipeline executions from the MLflow store, as one table (``featherface runs``).

Stage runs of every experiment (or of one) are grouped by their ``featherface.pipeline`` tag
(:func:`featherface.tracking.pipeline_id`). An execution gives one row per model that its
``evaluate`` run scored (its nested runs, tagged ``featherface.model``): true parameter count
and AP easy / medium / hard; the ONNX rows also get the CPU latency its ``export`` run measured
(``latency.json``: ``onnx`` is the exported Nano-B, ``model.onnx``; ``teacher`` is
``teacher.onnx``). An execution without an ``evaluate`` run (stopped early) gives one row with
its stages only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from featherface.tracking import TAG_PREFIX

PIPELINE_TAG = f"{TAG_PREFIX}pipeline"
STAGE_TAG = f"{TAG_PREFIX}stage"
MODEL_TAG = f"{TAG_PREFIX}model"
PARENT_TAG = "mlflow.parentRunId"
# evaluate's model name -> the stem of its file in latency.json
LATENCY_STEMS: dict[str, str] = {"onnx": "model", "teacher": "teacher"}
COLUMNS: tuple[str, ...] = (
    "mlflow_experiment",
    "pipeline",
    "started",
    "experiment",
    "commit",
    "stages",
    "model",
    "params_total",
    "ap_easy",
    "ap_medium",
    "ap_hard",
    "latency_ms_cpu_640",
    "latency_ratio",
)


def _started(runs: Sequence[Any]) -> str:
    first = min(run.info.start_time for run in runs)
    return datetime.fromtimestamp(first / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _latest(runs: Sequence[Any], stage: str) -> Any | None:
    matching = [run for run in runs if run.data.tags.get(STAGE_TAG) == stage]
    return max(matching, key=lambda run: run.info.start_time) if matching else None


def group_executions(runs: Sequence[Any], limit: int) -> list[list[Any]]:
    """Top-level stage runs grouped by pipeline tag, newest execution first, at most ``limit``."""
    groups: dict[str, list[Any]] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        tags = run.data.tags
        if PARENT_TAG in tags or PIPELINE_TAG not in tags:
            continue
        groups.setdefault(tags[PIPELINE_TAG], []).append(run)
    return list(groups.values())[:limit]


def execution_rows(runs: Sequence[Any], evaluated: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of one execution: its stage ``runs`` and the nested model runs of its evaluate run
    (``evaluated``)."""
    tags = runs[0].data.tags
    done = {run.data.tags.get(STAGE_TAG) for run in runs}
    base = {
        "pipeline": tags[PIPELINE_TAG],
        "started": _started(runs),
        "experiment": tags.get(f"{TAG_PREFIX}dvc_experiment", ""),
        "commit": tags.get(f"{TAG_PREFIX}git_commit", "")[:8],
        "stages": len(done),
    }
    export = _latest(runs, "export")
    latency = export.data.metrics if export is not None else {}
    rows = []
    for model_run in sorted(evaluated, key=lambda r: r.data.tags.get(MODEL_TAG, "")):
        name = model_run.data.tags.get(MODEL_TAG, model_run.info.run_name)
        metrics = model_run.data.metrics
        stem = LATENCY_STEMS.get(name)
        ms = latency.get(f"{stem}.latency_ms_cpu_640") if stem else None
        ratio = latency.get(f"{stem}.ratio_to_retinaface_mnet025") if stem else None
        row = {**base, "model": name, "latency_ms_cpu_640": ms, "latency_ratio": ratio}
        for key in ("params_total", "ap_easy", "ap_medium", "ap_hard"):
            row[key] = metrics.get(key)
        rows.append(row)
    return rows or [{**base, "model": None}]


def executions_table(client: Any, experiment: str | None, limit: int = 5) -> pd.DataFrame:
    """The table of the ``limit`` newest executions logged to MLflow ``experiment`` (``None``:
    every experiment of the store, as presets log to their own), through ``client`` (an
    ``mlflow.MlflowClient``); empty when the experiment does not exist."""
    if experiment is None:
        experiments = list(client.search_experiments())
    else:
        found = client.get_experiment_by_name(experiment)
        experiments = [] if found is None else [found]
    if not experiments:
        return pd.DataFrame(columns=list(COLUMNS))
    names = {found.experiment_id: found.name for found in experiments}
    runs = client.search_runs(
        list(names), max_results=max(200, 50 * limit), order_by=["start_time DESC"]
    )
    rows: list[dict[str, Any]] = []
    for group in group_executions(runs, limit):
        evaluate = _latest(group, "evaluate")
        evaluated = []
        if evaluate is not None:
            evaluated = client.search_runs(
                [evaluate.info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{evaluate.info.run_id}'",
            )
        name = names[group[0].info.experiment_id]
        rows.extend({**row, "mlflow_experiment": name} for row in execution_rows(group, evaluated))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.astype({"params_total": "Int64", "stages": "Int64"})


def recent_executions(uri: str, experiment: str | None, limit: int = 5) -> pd.DataFrame:
    """:func:`executions_table` of the MLflow store at tracking URI ``uri``."""
    from mlflow import MlflowClient

    return executions_table(MlflowClient(tracking_uri=uri), experiment, limit)


def experiment_names(uri: str) -> list[str]:
    """The names of the experiments in the MLflow store at ``uri``."""
    from mlflow import MlflowClient

    return sorted(found.name for found in MlflowClient(tracking_uri=uri).search_experiments())
