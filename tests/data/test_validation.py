"""The Great Expectations suite: each kind of bad row is caught, and the policy acts on it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from featherface.data.layout import WiderLayout, read_annotations
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


def test_undecodable_image_is_structural(tables) -> None:
    images, faces, paths = tables
    paths[2].write_bytes(paths[2].read_bytes()[:200])
    with pytest.raises(
        AnnotationError, match=r"wider_face_val_bbx_gt.txt:1: images: check failed: image decodes"
    ):
        validate_tables(images, faces, paths)
