"""The Great Expectations suite: each kind of bad row is caught, and the policy acts on it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from featherface.data.layout import WiderLayout, image_files, read_annotations
from featherface.data.validation import validate_tables
from featherface.errors import AnnotationError


@pytest.fixture
def tables(wider_folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    images, faces = read_annotations(wider_folder)
    layout = WiderLayout(wider_folder)
    paths = [layout.images_dir(s) / p for s, p in zip(images["split"], images["path"], strict=True)]
    return images, faces, paths


def _failed(images: pd.DataFrame, faces: pd.DataFrame, paths: list[Path]) -> dict[str, list[int]]:
    _, _, report = validate_tables(images, faces, paths, on_bad_rows="drop")
    return {r.check.description: r.failing_rows for r in report.results if not r.success}


def test_clean_folder_passes_and_drops_invalid(tables) -> None:
    images, faces, paths = tables
    kept_images, kept_faces, report = validate_tables(images, faces, paths)
    assert report.success
    assert report.dropped == {"invalid": 1, "zero_size": 0}
    assert len(kept_images) == 3 and len(kept_faces) == 4
    assert len(report.to_dict()["checks"]) == len(report.results)


def test_zero_size_boxes_are_dropped_and_counted(tables) -> None:
    images, faces, paths = tables
    faces.loc[0, "w"] = 0
    _, kept, report = validate_tables(images, faces, paths)
    assert report.dropped["zero_size"] == 1
    assert len(kept) == 3


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("x", -10, "box left edge >= -2 px"),
        ("y", -3, "box top edge >= -2 px"),
        ("w", 200, "box right edge within 2 px of the image"),
        ("h", 100, "box bottom edge within 2 px of the image"),
        ("lm0_x", 500.0, "landmarks within 0.5 x box size of the box"),
        ("blur", 3, "blur in 0..2"),
        ("expression", 2, "expression in 0..1"),
        ("illumination", -1, "illumination in 0..1"),
        ("occlusion", 5, "occlusion in 0..2"),
        ("pose", 2, "pose in 0..1"),
    ],
)
def test_each_row_check_catches_its_bad_row(tables, column: str, value: float, check: str) -> None:
    images, faces, paths = tables
    faces.loc[0, column] = value
    assert _failed(images, faces, paths) == {check: [0]}
    with pytest.raises(
        AnnotationError,
        match=rf"wider_face_train_bbx_gt.txt:3: faces: check failed: {re.escape(check)}",
    ):
        validate_tables(images, faces, paths, on_bad_rows="fail")
    _, kept, report = validate_tables(images, faces, paths, on_bad_rows="drop")
    assert report.dropped[check] == 1 and len(kept) == 3


@pytest.mark.parametrize(
    ("table", "column", "value", "check"),
    [
        ("images", "image_id", 0, "image_id unique"),
        ("images", "width", 0, "width >= 1"),
        ("images", "split", "test", "split is known"),
        ("images", "path", "0--Parade/0_Parade_a.jpg", "path unique within a split"),
        ("images", "height", 91, "image decodes with the recorded height"),
        ("faces", "image_id", 99, "face belongs to a known image"),
        ("faces", "face_index", 0, "(image_id, face_index) unique"),
    ],
)
def test_structural_failures_always_stop(
    tables, table: str, column: str, value, check: str
) -> None:
    images, faces, paths = tables
    frame = images if table == "images" else faces
    frame.loc[1, column] = value
    with pytest.raises(AnnotationError, match=rf"{table}: check failed: {re.escape(check)}"):
        validate_tables(images, faces, paths, on_bad_rows="drop")


def test_undecodable_image_is_its_own_error(tables) -> None:
    images, faces, paths = tables
    paths[2].write_bytes(paths[2].read_bytes()[:200])
    with pytest.raises(AnnotationError) as caught:
        validate_tables(images, faces, paths, on_bad_rows="drop")
    message = str(caught.value)
    assert message.startswith(f"{paths[2]}: cannot decode image (") and "\n" not in message


def test_corrupt_jpeg_in_a_folder_is_not_a_width_mismatch(wider_folder: Path) -> None:
    """The header reads (so the folder reads), the pixels do not: one line naming the image."""
    image = wider_folder / "WIDER_train" / "images" / "0--Parade" / "0_Parade_a.jpg"
    image.write_bytes(image.read_bytes()[:-400])
    images, faces = read_annotations(wider_folder)
    with pytest.raises(AnnotationError) as caught:
        validate_tables(images, faces, image_files(wider_folder, images))
    message = str(caught.value)
    assert message.startswith(f"{image}: cannot decode image (image file is truncated")
    assert "\n" not in message


def test_missing_image_at_validation(tables) -> None:
    images, faces, paths = tables
    paths[0].unlink()
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(paths[0]))}: image not found$"):
        validate_tables(images, faces, paths)


def _write_face(wider_folder: Path, old: str, new: str) -> None:
    split_file = wider_folder / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    split_file.write_text(split_file.read_text().replace(old, new))


@pytest.mark.parametrize("box", ["10 12 -60 40", "10 12 30 -1", "10 12 0 -5", "10 12 -3 -3"])
def test_negative_size_is_its_own_failing_check(wider_folder: Path, box: str) -> None:
    _write_face(wider_folder, "10 12 30 40", box)
    images, faces = read_annotations(wider_folder)
    paths = image_files(wider_folder, images)
    with pytest.raises(AnnotationError) as caught:
        validate_tables(images, faces, paths, on_bad_rows="fail")
    assert str(caught.value).startswith(
        "{}:3: faces: check failed: negative_size: w >= 0 and h >= 0 (1 rows)".format(
            wider_folder / "wider_face_split" / "wider_face_train_bbx_gt.txt"
        )
    )
    _, kept, report = validate_tables(images, faces, paths, on_bad_rows="drop")
    assert not report.success
    assert report.dropped == {"invalid": 1, "zero_size": 0, "negative_size": 1}
    assert len(kept) == 3 and (kept[["w", "h"]].to_numpy() > 0).all()


@pytest.mark.parametrize("box", ["10 12 0 40", "10 12 30 0", "10 12 0 0"])
def test_zero_size_keeps_being_dropped_and_counted(wider_folder: Path, box: str) -> None:
    _write_face(wider_folder, "10 12 30 40", box)
    images, faces = read_annotations(wider_folder)
    _, kept, report = validate_tables(images, faces, image_files(wider_folder, images))
    assert report.success
    assert report.dropped == {"invalid": 1, "zero_size": 1}
    assert len(kept) == 3


def test_prepare_fails_or_drops_a_negative_box(wider_folder: Path, tmp_path: Path) -> None:
    from featherface.data.prepare import prepare
    from featherface.params.data import DataParams

    _write_face(wider_folder, "10 12 30 40", "10 12 -60 40")
    strict = DataParams(source="widerface", widerface_root=str(wider_folder), on_bad_rows="fail")
    with pytest.raises(AnnotationError, match=r"bbx_gt.txt:3: faces: check failed: negative_size"):
        prepare(strict, tmp_path / "strict")
    lenient = DataParams(source="widerface", widerface_root=str(wider_folder), on_bad_rows="drop")
    statistics = prepare(lenient, tmp_path / "lenient")
    assert statistics["dropped"]["negative_size"] == 1
    assert len(pd.read_parquet(tmp_path / "lenient" / "faces.parquet")) == 3


def test_report_locates_each_failing_row(wider_folder: Path) -> None:
    from featherface.data.validation import RowSource

    split_file = wider_folder / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    split_file.write_text(split_file.read_text().replace("60 10 12 14 2", "60 10 12 14 7"))
    _write_face(wider_folder, "10 12 30 40 0", "10 12 30 40 9")
    images, faces = read_annotations(wider_folder)
    _, _, report = validate_tables(
        images, faces, image_files(wider_folder, images), on_bad_rows="drop"
    )
    (failed,) = [result for result in report.results if not result.success]
    train = wider_folder / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    assert failed.failing_sources == [RowSource(str(train), 3), RowSource(str(split_file), 4)]
    assert report.failure_lines() == [
        f"{train}:3: faces: blur in 0..2",
        f"{split_file}:4: faces: blur in 0..2",
    ]
    assert report.failure_lines(limit=1) == [
        f"{train}:3: faces: blur in 0..2",
        "faces: blur in 0..2: ... and 1 more rows",
    ]
    (entry,) = [check for check in report.to_dict()["checks"] if not check["success"]]
    assert entry["failing_at"] == [f"{train}:3", f"{split_file}:4"]
    assert all("failing_at" not in c for c in report.to_dict()["checks"] if c["success"])
