"""The WIDER FACE AP protocol: hand-computed cases, then the official figures on reference sets."""

from __future__ import annotations

import json
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.data.schema import FACE_COLUMNS, conform_faces, conform_images
from featherface.errors import FeatherFaceError
from featherface.evaluate.predictions import (
    EvaluationWarning,
    read_prediction_dir,
    write_prediction_file,
)
from featherface.evaluate.wider_ap import (
    GroundTruthImage,
    WiderGroundTruth,
    evaluate,
    overlaps_plus_one,
    score_thresholds,
    voc_ap,
)
from tests.helpers import reference_root

# One image, three 10x10 faces in a row (x y w h; the +1 convention makes them 10 pixels wide):
# f0 kept in every setting, f1 only in medium and hard, f2 only in hard.
F0, F1, F2 = (0, 0, 9, 9), (100, 0, 9, 9), (200, 0, 9, 9)
NOWHERE = (300, 0, 9, 9)
KEEP = {"easy": [0], "medium": [0, 1], "hard": [0, 1, 2]}
ONLY = {"easy": [0], "medium": [0], "hard": [0]}  # one face, kept everywhere


def _image(event: str, name: str, boxes: list, keep: dict[str, list[int]]) -> GroundTruthImage:
    return GroundTruthImage(
        event,
        name,
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        {setting: np.array(indices, dtype=np.int64) for setting, indices in keep.items()},
    )


def _truth(*images: GroundTruthImage) -> WiderGroundTruth:
    return WiderGroundTruth(images or (_image("0--A", "a", [F0, F1, F2], KEEP),))


def _rows(*detections: tuple[tuple[int, ...], float]) -> np.ndarray:
    return np.array([[*box, score] for box, score in detections], dtype=np.float64)


def _ap(predictions: dict, truth: WiderGroundTruth | None = None, **options) -> dict:
    return evaluate(predictions, truth or _truth(), **options).ap


def test_match_to_an_ignored_face_is_dropped_not_a_false_positive() -> None:
    # f1 first (ignored in easy), then f0. Normalised scores are 1 and 0, so until the last
    # threshold only the f1 detection counts: easy has 0 proposals there (precision NaN), then
    # 1 proposal, 1 true positive. Counted as a false positive, easy would be 0.5.
    ap = _ap({"0--A": {"a": _rows((F1, 0.9), (F0, 0.5))}})
    assert ap == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 2 / 3}, abs=1e-12)


def test_duplicate_of_a_recalled_face_is_a_false_positive() -> None:
    # f0, f0 again, f1. Medium: (recall 1/2, precision 1), (1/2, 1/2), (1, 2/3).
    ap = _ap({"0--A": {"a": _rows((F0, 0.9), (F0, 0.8), (F1, 0.7))}})
    assert ap == pytest.approx({"easy": 1.0, "medium": 5 / 6, "hard": 5 / 9}, abs=1e-12)


def test_file_order_is_kept_not_re_sorted() -> None:
    # Every threshold that passes the f0 line (the last line) also counts the earlier miss.
    unsorted = _ap({"0--A": {"a": _rows((NOWHERE, 0.2), (F0, 0.9))}})
    ordered = _ap({"0--A": {"a": _rows((F0, 0.9), (NOWHERE, 0.2))}})
    assert unsorted["easy"] == pytest.approx(0.5, abs=1e-12)
    assert ordered["easy"] == pytest.approx(1.0, abs=1e-12)


def test_equal_scores_over_the_whole_set_give_zero_ap() -> None:
    # lo = hi = 0.5: the official normalisation divides 0 by 0, every score becomes NaN and no
    # detection passes any threshold. The result is kept, with a warning saying why.
    expected = (
        "all 3 scores are equal (0.5): the official protocol's thresholds cannot rank them, AP is 0"
    )
    predictions = {"0--A": {"a": _rows((F0, 0.5), (F1, 0.5), (F2, 0.5))}}
    with pytest.warns(EvaluationWarning, match=f"^{re.escape(expected)}$") as caught:
        result = evaluate(predictions, _truth())
    assert result.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert np.isnan(result.curves["hard"][1]).all()
    assert [warning.filename for warning in caught] == [__file__]


def test_ranked_or_absent_scores_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvaluationWarning)
        # Equal scores above 1 normalise to 1 (lo = 1, hi = s): the protocol counts them all.
        ap = _ap({"0--A": {"a": _rows((F0, 2.0), (F1, 2.0), (F2, 2.0))}})
        assert ap["hard"] == pytest.approx(1.0, abs=1e-12)
        assert _ap({"0--A": {"a": _rows((F0, 0.9), (F1, 0.5))}})["medium"] > 0
        assert _ap({"0--A": {"a": np.zeros((0, 5))}}) == {"easy": 0, "medium": 0, "hard": 0}


def test_non_finite_predictions_in_memory_are_refused() -> None:
    rows = _rows((F0, 0.9), (F1, 0.5))
    rows[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"predictions\['0--A'\]\['a'\] row 1 is not finite"):
        evaluate({"0--A": {"a": rows}}, _truth())


def test_scores_are_normalised_over_images_outside_the_ground_truth() -> None:
    predictions = {"0--A": {"a": _rows((F0, 0.9), (NOWHERE, 0.5))}}
    assert _ap(predictions)["easy"] == pytest.approx(1.0, abs=1e-12)
    # A score of 1000 elsewhere squeezes both lines below the first threshold but 0.
    predictions["9--Z"] = {"z": _rows((F0, 1000.0))}
    assert _ap(predictions)["easy"] == pytest.approx(0.5, abs=1e-12)


def test_images_with_boxes_but_no_kept_face_still_count_false_positives() -> None:
    only_hard = _image("0--A", "c", [F2], {"easy": [], "medium": [], "hard": [0]})
    no_boxes = _image("0--A", "d", [], {"easy": [], "medium": [], "hard": []})
    main = _image("0--A", "a", [F0, F1, F2], KEEP)
    miss = {
        "0--A": {
            "a": _rows((F0, 0.9)),
            "c": _rows((NOWHERE, 0.95)),
            "d": np.zeros((0, 5)),
        }
    }
    assert _ap(miss, _truth(main, only_hard))["easy"] == pytest.approx(0.5, abs=1e-12)
    # An image without boxes is skipped whole: its detections are not false positives.
    miss["0--A"]["d"] = miss["0--A"].pop("c")
    assert _ap(miss, _truth(main, no_boxes))["easy"] == pytest.approx(1.0, abs=1e-12)


def test_missing_image_is_an_error_unless_counted_as_empty() -> None:
    second = _image("0--A", "b", [F0], {"easy": [0], "medium": [0], "hard": [0]})
    truth = _truth(_image("0--A", "a", [F0, F1, F2], KEEP), second)
    predictions = {"0--A": {"a": _rows((F0, 0.9), (NOWHERE, 0.5))}}
    message = (
        "1 images have no predictions: 0--A/b; use --missing-as-empty to count them as images "
        "without detections"
    )
    with pytest.raises(FeatherFaceError, match=f"^{re.escape(message)}$"):
        evaluate(predictions, truth)
    result = evaluate(predictions, truth, missing_as_empty=True)
    assert result.faces == {"easy": 2, "medium": 3, "hard": 4}
    assert result.ap["easy"] == pytest.approx(0.5, abs=1e-12)
    predictions["0--A"]["b"] = np.zeros((0, 5))
    assert _ap(predictions, truth) == result.ap


def test_missing_as_empty_warns_when_most_images_are_missing() -> None:
    others = [_image("0--A", f"m{index}", [F0], ONLY) for index in range(3)]
    truth = _truth(_image("0--A", "a", [F0, F1, F2], KEEP), *others)
    predictions = {"0--A": {"a": _rows((F0, 0.9), (NOWHERE, 0.5))}}
    with pytest.warns(EvaluationWarning) as caught:
        result = evaluate(predictions, truth, missing_as_empty=True)
    (warning,) = caught
    assert str(warning.message).startswith(
        "3 of 4 ground-truth images have no predictions and count as images without detections "
        "(--missing-as-empty)"
    )
    assert warning.filename == __file__
    assert result.ap["easy"] == pytest.approx(0.25, abs=1e-12)


def test_empty_prediction_file_with_the_option(tmp_path: Path) -> None:
    second = _image("0--A", "b", [F0], {"easy": [0], "medium": [0], "hard": [0]})
    truth = _truth(_image("0--A", "a", [F0, F1, F2], KEEP), second)
    corners = np.array([[0, 0, 9, 9], [300, 0, 309, 9]])
    write_prediction_file(tmp_path / "0--A" / "a.txt", "a", corners, [0.9, 0.5])
    (tmp_path / "0--A" / "b.txt").write_bytes(b"")
    with pytest.raises(FeatherFaceError, match=r"0--A/b\.txt \(empty\)"):
        read_prediction_dir(tmp_path, truth.expected())
    predictions = read_prediction_dir(tmp_path, truth.expected(), missing_as_empty=True)
    assert _ap(predictions, truth)["easy"] == pytest.approx(0.5, abs=1e-12)


def test_overlaps_use_the_plus_one_convention() -> None:
    boxes = np.array([[0, 0, 9, 9], [10, 0, 19, 9], [3, 3, 3, 3], [5, 5, 2, 9]], dtype=float)
    iou = overlaps_plus_one(boxes, np.array([[5, 0, 14, 9]], dtype=float))
    # 5x10 overlap of two 10x10 boxes; 5x10 again; a 1-pixel box outside; a negative width.
    np.testing.assert_allclose(iou[:, 0], [50 / 150, 50 / 150, 0, 0], rtol=0, atol=1e-15)
    touching = overlaps_plus_one(np.array([[0.0, 0, 9, 9]]), np.array([[10.0, 0, 19, 9]]))
    assert touching[0, 0] == 0


def test_thresholds_and_voc_ap() -> None:
    thresholds = score_thresholds()
    assert len(thresholds) == 1000
    assert (thresholds[0], thresholds[499], thresholds[-1]) == (0.999, 0.5, 0.0)
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(recall, precision) == pytest.approx(5 / 6, abs=1e-15)
    assert voc_ap(np.array([0.0, 0.5]), np.array([np.nan, 1.0])) == 0.5


def test_tables_give_the_same_ground_truth() -> None:
    images = pd.DataFrame(
        {
            "image_id": [3, 4, 9],
            "path": ["0--A/a.jpg", "0--A/b.jpg", "1--T/t.jpg"],
            "event": ["0--A", "0--A", "1--T"],
            "width": [400, 100, 10],
            "height": [100, 100, 10],
            "split": ["val", "val", "train"],
        }
    )
    rows = [(3, 2, *F2, False, False, True), (3, 0, *F0, True, True, True)]
    rows += [(3, 1, *F1, False, True, True), (9, 0, 1, 1, 2, 2, None, None, None)]
    faces = pd.DataFrame(
        rows, columns=["image_id", "face_index", "x", "y", "w", "h", "e", "m", "h2"]
    )
    faces = faces.rename(columns={"e": "keep_easy", "m": "keep_medium", "h2": "keep_hard"})
    for column in FACE_COLUMNS:
        if column not in faces:
            faces[column] = 0
    truth = WiderGroundTruth.from_tables(conform_images(images), conform_faces(faces))
    assert [(image.event, image.name) for image in truth.images] == [("0--A", "a"), ("0--A", "b")]
    np.testing.assert_array_equal(truth.images[0].boxes, [F0, F1, F2])
    assert {s: list(keep) for s, keep in truth.images[0].keep.items()} == KEEP
    assert truth.images[1].boxes.shape == (0, 4)
    with pytest.raises(FeatherFaceError, match="no easy/medium/hard keep flags"):
        WiderGroundTruth.from_tables(conform_images(images), conform_faces(faces), "train")


# Reference checks: the official evaluator's figures (expected.json) on real ground truth.

SETS = ("predictions_A_good", "predictions_C_edge")


def _extract(archive: Path, destination: Path) -> Path:
    """Extract with the "data" filter (no links out, no absolute paths); the one folder inside."""
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    (folder,) = [path for path in destination.iterdir() if path.is_dir()]
    return folder


@pytest.fixture(scope="module")
def val_truth() -> WiderGroundTruth:
    """The official val ground truth, read once per module (the ``reference`` skip rule)."""
    root = reference_root()
    if not (root / "expected.json").is_file():
        pytest.skip(f"reference folder {root} is absent (it lives beside the repository in CI)")
    return WiderGroundTruth.from_mat(root / "widerface" / "ground_truth")


@pytest.fixture(scope="module")
def full_val(val_truth: WiderGroundTruth, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The two reference sets, extracted and read: folders and predictions by set name."""
    root, truth = reference_root(), val_truth
    folders = {
        name: _extract(root / "eval" / f"{name}.tar.gz", tmp_path_factory.mktemp(name))
        for name in SETS
    }
    predictions = {
        name: read_prediction_dir(folder, truth.expected()) for name, folder in folders.items()
    }
    return {"root": root, "truth": truth, "folders": folders, "predictions": predictions}


@pytest.mark.parametrize("name", SETS)
def test_reference_sets_reproduce_the_official_ap(full_val: dict, name: str) -> None:
    expected = json.loads((full_val["root"] / "expected.json").read_text())
    result = evaluate(full_val["predictions"][name], full_val["truth"])
    figures = expected["evaluation_protocol"]["prediction_sets"][f"eval/{name}.tar.gz"]["ap"]
    assert result.ap == pytest.approx(figures, abs=1e-9)
    assert result.faces == {"easy": 7211, "medium": 13319, "hard": 31958}


def test_edge_set_cases_are_read_as_the_official_reader_does(full_val: dict) -> None:
    folder = full_val["folders"]["predictions_C_edge"]
    manifest = json.loads((folder.parent / "C_edge_manifest.json").read_text())
    predictions = full_val["predictions"]["predictions_C_edge"]
    rows = {key: predictions[key.split("/")[0]][key.split("/")[1]] for key in manifest["empty"]}
    assert {boxes.shape for boxes in rows.values()} == {(0, 5)}
    for key in manifest["path_name_line"] + manifest["wrong_count"]:
        event, name = key.split("/")
        assert len(predictions[event][name])
    for key in manifest["trailing_space_blank_lines"][:20]:
        event, name = key.split("/")
        lines = (folder / event / f"{name}.txt").read_text().split("\n")[2:]
        assert len(predictions[event][name]) == sum(1 for line in lines if line.strip())


@pytest.mark.parametrize("model", ["featherface_v1", "retinaface_mnet025"])
def test_val4_reference_predictions(
    reference: Path, val_truth: WiderGroundTruth, model: str
) -> None:
    expected = json.loads((reference / "expected.json").read_text())["widerface_val4"]
    val4 = reference / "widerface" / "val4"
    paths = [f"{p.parent.name}/{p.name}" for p in (val4 / "images").glob("*/*.jpg")]
    truth = val_truth.select(paths)
    faces = expected["faces_kept"]
    assert truth.face_counts() == {s: faces[s] for s in ("easy", "medium", "hard")}
    predictions = read_prediction_dir(val4 / "reference_predictions" / model, truth.expected())
    assert evaluate(predictions, truth).ap == pytest.approx(expected["ap"][model], abs=1e-9)


# The command: errors and warnings as one line each on stderr.


def _cli(monkeypatch: pytest.MonkeyPatch, truth: WiderGroundTruth, *arguments: str):
    """Run ``featherface wider-ap`` with ``truth`` as whatever ``--gt`` names."""
    import featherface.evaluate.ground_truth as ground_truth

    monkeypatch.setattr(ground_truth, "load_ground_truth", lambda source: truth)
    return CliRunner().invoke(app, ["wider-ap", *arguments, "--gt", "gt"])


def test_cli_refuses_a_nan_score_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pred" / "0--A" / "a.txt"
    path.parent.mkdir(parents=True)
    path.write_text("a\n3\n0 0 9 9 0.9\n100 0 9 9 nan\n200 0 9 9 0.7\n")
    result = _cli(monkeypatch, _truth(), str(tmp_path / "pred"))
    # Before: exit 0 and {"easy": 0.0, "medium": 0.0, "hard": 0.0} (the NaN poisons the
    # normalisation of every score).
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}:4: score is nan, not a finite number\n"
    assert result.stdout == ""


def test_cli_prints_each_warning_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pred"
    corners = np.array([[0, 0, 9, 9], [100, 0, 109, 9]])
    write_prediction_file(folder / "0--A" / "a.txt", "a", corners, [0.5, 0.5])
    others = [_image("1--B", f"b{index}", [F0], ONLY) for index in range(3)]
    truth = _truth(_image("0--A", "a", [F0, F1, F2], KEEP), *others)
    result = _cli(monkeypatch, truth, str(folder), "--json", "--missing-as-empty")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert result.stderr.splitlines() == [
        f"warning: 3 of 4 ground-truth images have no prediction file in {folder} and count as "
        "images without detections (--missing-as-empty), so the AP is not that of the "
        "predictions given: is --gt the ground truth they were made for?",
        "warning: all 2 scores are equal (0.5): the official protocol's thresholds cannot rank "
        "them, AP is 0",
    ]


def test_cli_error_for_missing_files_names_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pred" / "0--A").mkdir(parents=True)
    result = _cli(monkeypatch, _truth(), str(tmp_path / "pred"))
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "; use --missing-as-empty to count them as images without detections\n"
    )
    assert "missing_as_empty" not in result.stderr
