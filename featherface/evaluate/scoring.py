"""Scoring models on the validation split with the WIDER protocol: what the ``evaluate`` stage
runs for every model, and the validation AP of the training stages (:func:`validation_ap`).

For each model file (our ``.pt`` checkpoints or an ``.onnx`` export) it detects faces on the
validation images, writes the official prediction layout under ``predictions/<model>/`` (so the
official tool can score it too), and computes easy/medium/hard AP. A training stage's
``val_detections.npz`` stands in for running its model when it was made by the same model file,
data, code and settings (:mod:`featherface.evaluate.stored_detections`). Outputs:

- ``metrics.json``: per model ``ap_easy``, ``ap_medium``, ``ap_hard``, ``params_total`` and
  ``gmacs_640`` (``null`` for an ONNX file, whose cost is that of its source checkpoint);
- ``pr_easy.csv``, ``pr_medium.csv``, ``pr_hard.csv``: PR curves of all models (DVC plots);
- ``pr_curves.png`` and ``report.md``.

Everything is built in a temporary folder and swapped in only when complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featherface.data.prepare import load_prepared
from featherface.detection.postprocess import Detections
from featherface.errors import FeatherFaceError
from featherface.evaluate.ground_truth import load_ground_truth
from featherface.evaluate.inference import detect_split, write_predictions
from featherface.evaluate.predictions import prediction_array
from featherface.evaluate.report import plot_pr_curves, report_markdown, write_pr_tables
from featherface.evaluate.runtime import OnnxRunner, TorchRunner, load_runner
from featherface.evaluate.stored_detections import FILE_NAME as STORED_DETECTIONS
from featherface.evaluate.stored_detections import (
    detection_key,
    load_detections,
    save_detections,
)
from featherface.evaluate.wider_ap import WiderResult, evaluate
from featherface.params import EvaluateParams
from featherface.utils.atomic import staged_dir, write_json, write_text

ProgressCallback = Callable[[str, int, int], None]


def stored_detection_files(models: Mapping[str, Path]) -> dict[str, Path]:
    """The ``val_detections.npz`` a training stage left next to each ``.pt`` model, if any."""
    return {
        name: path.parent / STORED_DETECTIONS
        for name, path in models.items()
        if path.suffix == ".pt" and (path.parent / STORED_DETECTIONS).is_file()
    }


def model_size(runner: TorchRunner | OnnxRunner) -> dict[str, Any]:
    """``params_total`` and ``gmacs_640`` of a runner's network (ONNX: initializer count, and
    no GMACs)."""
    if isinstance(runner, TorchRunner):
        from featherface.models.complexity import mac_counts, params_total

        return {
            "params_total": params_total(runner.model),
            "gmacs_640": mac_counts(runner.model)[0],
        }
    from onnx import load, numpy_helper

    graph = load(str(runner.path)).graph
    count = sum(int(np.prod(numpy_helper.to_array(t).shape)) for t in graph.initializer)
    return {"params_total": count, "gmacs_640": None}


def _stored(
    stored: Path | None,
    model: Path,
    runner: TorchRunner | OnnxRunner,
    prepare_dir: Path,
    params: EvaluateParams,
    keys: list[tuple[str, str]],
    say: Callable[[str], None] | None,
) -> list[Detections] | None:
    """The detections in ``stored`` when they match what running ``model`` would give, else
    ``None``; ``say`` is told which."""
    if stored is None:
        return None
    if not stored.is_file():
        raise FeatherFaceError(f"{stored}: stored detections file not found")
    device = runner.device if isinstance(runner, TorchRunner) else "cpu"
    found, why = load_detections(stored, detection_key(model, prepare_dir, params, device), keys)
    if say:
        reused = found is not None
        use = "reused (same model, data, code and settings)" if reused else f"not reused: {why}"
        say(f"{model}: detections of {stored} {use}")
    return found


def prediction_sets(
    keys: Sequence[tuple[str, str]], found: Sequence[Detections]
) -> dict[str, dict[str, np.ndarray]]:
    """``predictions[event][name]`` as the evaluator takes them (what writing the official files
    and reading them back gives) from the detections of each ``(event, name)``."""
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for (event, name), detections in zip(keys, found, strict=True):
        boxes, scores = detections.boxes.numpy(), detections.scores.numpy()
        predictions.setdefault(event, {})[name] = prediction_array(boxes, scores)
    return predictions


def image_keys(paths: Iterable[str]) -> list[tuple[str, str]]:
    """``(event, name)`` of each relative image path ``event/name.jpg``."""
    return [tuple(str(path).removesuffix(".jpg").split("/", 1)) for path in paths]


def evaluate_models(
    models: Mapping[str, Path],
    prepare_dir: Path,
    out_dir: Path,
    params: EvaluateParams,
    progress: ProgressCallback | None = None,
    stored: Mapping[str, Path] | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, WiderResult]]:
    """Score each model on the validation split into ``out_dir``; return metrics and results.

    ``stored``: ``{name: val_detections.npz}`` kept by the training stage of model ``name``; they
    stand in for running the model when their key matches
    (:mod:`featherface.evaluate.stored_detections`). ``say`` gets one line per stored file: used,
    or why not.
    """
    if not models:
        raise FeatherFaceError("no model to evaluate: give one, or run the training stages first")
    stored = dict(stored or {})
    unknown = sorted(stored.keys() - models.keys())
    if unknown:
        raise FeatherFaceError(f"stored detections for {', '.join(unknown)}, which is not a model")
    prepared = load_prepared(prepare_dir)
    truth = load_ground_truth(prepare_dir)
    val = prepared.images[prepared.images["split"] == "val"]
    files = [prepared.image_path(row) for _, row in val.iterrows()]
    keys = image_keys(val["path"])
    metrics: dict[str, dict[str, Any]] = {}
    results: dict[str, WiderResult] = {}
    with staged_dir(out_dir) as staging:
        for name, path in models.items():
            runner = load_runner(path)
            report = (
                (lambda done, n=name: progress(f"detect {n}", done, len(files)))
                if progress
                else None
            )
            found = _stored(stored.get(name), path, runner, prepare_dir, params, keys, say)
            if found is None:
                found = detect_split(runner, files, params, report)
            write_predictions(dict(zip(keys, found, strict=True)), staging / "predictions" / name)
            results[name] = evaluate(prediction_sets(keys, found), truth)
            metrics[name] = {**results[name].metrics(), **model_size(runner)}
        write_json(staging / "metrics.json", metrics)
        write_pr_tables(results, staging)
        plot_pr_curves(results, staging / "pr_curves.png")
        write_text(staging / "report.md", report_markdown(metrics, "pr_curves.png"))
    return metrics, results


def validation_ap(
    model: torch.nn.Module,
    prepare_dir: Path,
    device: str | torch.device = "cpu",
    model_file: Path | None = None,
) -> dict[str, float]:
    """WIDER-protocol AP of ``model`` on the validation split (the default ``evaluate``
    settings, those of the reference): what a training stage reports in its ``metrics.json``.

    With ``model_file`` (the file ``model`` was loaded from), the detections are also kept in
    ``val_detections.npz`` next to it, for the ``evaluate`` stage to reuse
    (:mod:`featherface.evaluate.stored_detections`).
    """
    settings = EvaluateParams()
    data = load_prepared(prepare_dir)
    val = data.images[data.images["split"] == "val"]
    files = [data.image_path(row) for _, row in val.iterrows()]
    found = detect_split(TorchRunner(model, device), files, settings)
    keys = image_keys(val["path"])
    if model_file is not None:
        key = detection_key(model_file, prepare_dir, settings, device)
        save_detections(model_file.parent / STORED_DETECTIONS, key, keys, found)
    predictions = prediction_sets(keys, found)
    return evaluate(predictions, load_ground_truth(prepare_dir)).metrics()
