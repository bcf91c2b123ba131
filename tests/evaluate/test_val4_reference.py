"""Whole-image inference of both reference models on 4 real WIDER FACE val images, compared with
the prediction files of the original code, and the official AP of the result.

Settings (``expected.json`` ``widerface_val4.inference_settings``): original image size, BGR
minus (104, 117, 123), score > 0.02, top 5000 before NMS, NMS IoU 0.4, keep 750. Each model runs
once per image for the whole module (about 4 s of inference on one thread).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from featherface.detection.postprocess import Detections
from featherface.evaluate.inference import detect_image, read_rgb, write_predictions
from featherface.evaluate.predictions import (
    prediction_array,
    read_prediction_dir,
    read_prediction_file,
)
from featherface.evaluate.runtime import TorchRunner
from featherface.evaluate.wider_ap import WiderGroundTruth, evaluate
from featherface.models.convert import load_reference_checkpoint
from featherface.params import PostprocessSettings

MODELS = {
    "featherface_v1": ("featherface-v1", "featherface_v1_reference.pth"),
    "retinaface_mnet025": ("retinaface-mnet025", "retinaface_mnet025_reference.pth"),
}
SETTINGS = PostprocessSettings(score_threshold=0.02, nms_iou=0.4, top_k=5000, keep_k=750)
SCORE_TOLERANCE = 1e-4
PIXEL_TOLERANCE = 1
AP_TOLERANCE = 1e-3

ImageKey = tuple[str, str]


def val4_images(reference: Path) -> list[Path]:
    return sorted((reference / "widerface" / "val4" / "images").glob("*/*.jpg"))


@cache
def val4_detections(reference: Path, model: str) -> dict[ImageKey, Detections]:
    """``{(event, name): Detections}`` of one reference model, computed once per session."""
    arch, weights = MODELS[model]
    runner = TorchRunner(load_reference_checkpoint(arch, reference / "weights" / weights))
    return {
        (path.parent.name, path.stem): detect_image(runner, read_rgb(path), postprocess=SETTINGS)
        for path in val4_images(reference)
    }


@cache
def val4_ground_truth(reference: Path) -> WiderGroundTruth:
    """The official ``.mat`` ground truth restricted to the 4 images."""
    truth = WiderGroundTruth.from_mat(reference / "widerface" / "ground_truth")
    return truth.select(f"{path.parent.name}/{path.name}" for path in val4_images(reference))


def match_rows(
    ours: np.ndarray, theirs: np.ndarray
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pair prediction rows ``(x, y, w, h, score)`` by order, allowing rows of near-equal score
    to swap: row ``i`` of ours takes the unused row of theirs nearest to ``i`` whose score is
    within :data:`SCORE_TOLERANCE` and box within :data:`PIXEL_TOLERANCE`. Returns the pairs and
    the unmatched row indices of each side."""
    used = np.zeros(len(theirs), dtype=bool)
    pairs, lonely = [], []
    for i, row in enumerate(ours):
        close = (
            ~used
            & (np.abs(theirs[:, 4] - row[4]) <= SCORE_TOLERANCE)
            & (np.abs(theirs[:, :4] - row[:4]).max(axis=1) <= PIXEL_TOLERANCE)
        )
        candidates = np.flatnonzero(close)
        if candidates.size == 0:
            lonely.append(i)
            continue
        j = int(candidates[np.argmin(np.abs(candidates - i))])
        used[j] = True
        pairs.append((i, j))
    return pairs, lonely, np.flatnonzero(~used).tolist()


def at_the_edge(rows: np.ndarray, all_rows: np.ndarray) -> bool:
    """Whether unmatched rows sit where float ties may legitimately move a line in or out: a
    score within the tolerance of the threshold, or of the last kept score when ``keep_k`` cut."""
    edge = SETTINGS.score_threshold
    if len(all_rows) >= SETTINGS.keep_k:
        edge = max(edge, float(all_rows[:, 4].min()))
    return bool(np.all(rows[:, 4] <= edge + SCORE_TOLERANCE))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_predictions_match_the_reference_box_for_box(reference: Path, model: str) -> None:
    folder = reference / "widerface" / "val4" / "reference_predictions" / model
    for (event, name), found in val4_detections(reference, model).items():
        ours = prediction_array(found.boxes.numpy(), found.scores.numpy())
        key, theirs = read_prediction_file(folder / event / f"{name}.txt")
        assert key == name
        pairs, ours_alone, theirs_alone = match_rows(ours, theirs)
        where = f"{model} {event}/{name}"
        assert at_the_edge(ours[ours_alone], ours), f"{where}: {len(ours_alone)} rows unmatched"
        assert at_the_edge(theirs[theirs_alone], theirs), (
            f"{where}: {len(theirs_alone)} rows missing"
        )
        swapped = sum(i != j for i, j in pairs)
        assert swapped <= 0.05 * len(pairs), f"{where}: {swapped} rows out of order"


def test_val4_ground_truth_selection(reference: Path) -> None:
    expected = json.loads((reference / "expected.json").read_text())["widerface_val4"]
    truth = val4_ground_truth(reference)
    assert len(truth.images) == 4
    kept = expected["faces_kept"]
    assert truth.face_counts() == {s: kept[s] for s in ("easy", "medium", "hard")}
    assert sum(len(image.boxes) for image in truth.images) == kept["all_boxes"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_official_ap_of_our_predictions(reference: Path, model: str, tmp_path: Path) -> None:
    expected = json.loads((reference / "expected.json").read_text())["widerface_val4"]["ap"]
    truth = val4_ground_truth(reference)
    write_predictions(val4_detections(reference, model), tmp_path / "predictions")
    predictions = read_prediction_dir(tmp_path / "predictions", truth.expected())
    ap = evaluate(predictions, truth).ap
    for setting, value in expected[model].items():
        assert ap[setting] == pytest.approx(value, abs=AP_TOLERANCE), setting
