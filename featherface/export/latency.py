"""CPU latency of the exported detectors, measured by the ``export`` stage (``latency.json``).

The setting of the latency targets in the README: a ``640 x 640`` image, ONNX Runtime on one
thread, one interleaved run (:func:`featherface.export.bench.run_blocks`) of every exported raw
graph and of a stand-in RetinaFace-mnet0.25
(:func:`featherface.export.bench_models.local_reference`: this package's network with
random weights and its face classifier silenced, so that it costs what the trained network
costs). Per model:

- ``latency_ms_cpu_640``: median end-to-end time (BGR image to faces: pre-processing, network,
  decoding, score threshold 0.5, NMS at IoU 0.4, as ``featherface bench`` times it);
- ``latency_p90_ms_cpu_640``: its 90th percentile;
- ``network_ms_cpu_640``: median time of the network alone;
- ``ratio_to_retinaface_mnet025``: ``latency_ms_cpu_640`` over the stand-in's, which is what
  to compare across machines: the absolute times depend on the machine and its load.

These are the only figures of the pipeline that change from one run to the next with the same
parameters.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from featherface.export.bench import BenchSettings, run_blocks
from featherface.export.bench_models import (
    END_TO_END,
    LOCAL_REFERENCE,
    NETWORK,
    RunnerSubject,
    Thresholds,
    local_reference,
)

SIZE = 640
THREADS = 1
WARMUP = 3
REFERENCE_KEY = "retinaface_mnet025"


def _row(rows: list[dict[str, Any]], label: str, mode: str) -> dict[str, Any]:
    return next(row for row in rows if row["model"] == label and row["mode"] == mode)


def measure_latency(
    onnx_files: Mapping[str, Path], runs: int, image: Path | None = None
) -> dict[str, Any]:
    """Time every ``{stem: raw ONNX graph}`` and the stand-in reference (module doc) over
    ``runs`` interleaved rounds after :data:`WARMUP`; ``image`` is resized to 640 x 640 (uniform
    noise when ``None``). Returns the ``latency.json`` report."""
    thresholds = Thresholds()
    subjects = [
        RunnerSubject(stem, path, (THREADS,), thresholds) for stem, path in onnx_files.items()
    ]
    settings = BenchSettings(
        sizes=(SIZE,), threads=(THREADS,), runs=runs, warmup=WARMUP, image=image
    )
    with tempfile.TemporaryDirectory() as folder:
        subjects.append(local_reference(Path(folder), (THREADS,), thresholds))
        rows = run_blocks(subjects, settings)
    reference_ms = _row(rows, LOCAL_REFERENCE, END_TO_END)["median_ms"]
    report: dict[str, Any] = {
        "settings": {
            "size": SIZE,
            "threads": THREADS,
            "runs": runs,
            "warmup": WARMUP,
            "runtime": "onnxruntime",
            "image": str(image) if image else "uniform noise",
        }
    }
    for label in [*onnx_files, LOCAL_REFERENCE]:
        end_to_end = _row(rows, label, END_TO_END)
        report[REFERENCE_KEY if label == LOCAL_REFERENCE else label] = {
            "latency_ms_cpu_640": end_to_end["median_ms"],
            "latency_p90_ms_cpu_640": end_to_end["p90_ms"],
            "network_ms_cpu_640": _row(rows, label, NETWORK)["median_ms"],
            "ratio_to_retinaface_mnet025": round(end_to_end["median_ms"] / reference_ms, 3),
        }
    return report
