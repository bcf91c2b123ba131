"""Reading a WIDER-layout folder into the canonical tables, and writing it back."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featherface.data.layout import read_annotations, resolve_root, write_annotations
from featherface.data.schema import FACE_COLUMNS, IMAGE_COLUMNS, conform_faces, conform_images
from featherface.errors import AnnotationError
from tests.helpers import SPLIT_TEXT


def test_tables_follow_the_schema(wider_folder: Path) -> None:
    images, faces = read_annotations(wider_folder)
    assert list(conform_images(images).columns) == list(IMAGE_COLUMNS)
    assert list(conform_faces(faces).columns) == list(FACE_COLUMNS)
    assert images["image_id"].tolist() == [0, 1, 2]
    assert images["split"].tolist() == ["train", "train", "val"]
    assert images[["width", "height"]].values.tolist() == [[120, 90], [64, 48], [100, 80]]
    assert images["event"].tolist() == ["0--Parade", "1--Handshaking", "0--Parade"]
    assert faces.groupby("image_id").size().to_dict() == {0: 2, 2: 3}
    assert faces["source_line"].tolist() == [3, 4, 3, 4, 5]


def test_landmarks_come_from_label_file(wider_folder: Path) -> None:
    _, faces = read_annotations(wider_folder)
    first = faces.iloc[0]
    assert (first["lm0_x"], first["lm0_y"], first["lm4_x"], first["lm4_y"]) == (
        18.0,
        25.0,
        31.0,
        42.0,
    )
    assert math.isnan(faces.iloc[1]["lm0_x"])
    assert faces[faces["image_id"] == 2]["lm0_x"].isna().all()


def test_keep_lists_are_na_without_mat_files(wider_folder: Path) -> None:
    _, faces = read_annotations(wider_folder)
    assert faces["keep_hard"].isna().all()


def test_write_then_read_round_trips_with_keep_lists(wider_folder: Path, tmp_path: Path) -> None:
    images, faces = read_annotations(wider_folder)
    val = faces["image_id"] == 2
    faces.loc[val, "keep_hard"] = [True, True, False]
    faces.loc[val, "keep_medium"] = [True, False, False]
    faces.loc[val, "keep_easy"] = [True, False, False]
    copy = tmp_path / "copy"
    shutil.copytree(wider_folder / "WIDER_train", copy / "WIDER_train")
    shutil.copytree(wider_folder / "WIDER_val", copy / "WIDER_val")
    write_annotations(copy, images, faces)
    for split, text in SPLIT_TEXT.items():
        assert (copy / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt").read_text() == text
    images2, faces2 = read_annotations(copy)
    pd.testing.assert_frame_equal(conform_images(images), conform_images(images2))
    pd.testing.assert_frame_equal(conform_faces(faces), conform_faces(faces2))


def test_resolve_root_accepts_torchvision_folder(wider_folder: Path) -> None:
    assert resolve_root(wider_folder) == wider_folder
    parent = wider_folder.parent / "download"
    shutil.copytree(wider_folder, parent / "widerface")
    assert resolve_root(parent) == parent / "widerface"
    with pytest.raises(AnnotationError, match="no wider_face_split/ folder"):
        resolve_root(wider_folder / "WIDER_val")


def test_missing_image_names_split_file_and_line(wider_folder: Path) -> None:
    (wider_folder / "WIDER_train" / "images" / "1--Handshaking" / "1_Handshaking_b.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"wider_face_train_bbx_gt.txt:5: image not found"):
        read_annotations(wider_folder)


def test_unreadable_image_is_reported(wider_folder: Path) -> None:
    image = wider_folder / "WIDER_val" / "images" / "0--Parade" / "0_Parade_c.jpg"
    image.write_bytes(b"garbage")
    with pytest.raises(AnnotationError) as caught:
        read_annotations(wider_folder)
    assert str(caught.value) == f"{image}: cannot decode image (not an image in a format PIL reads)"


def test_mat_boxes_must_match_split_file(wider_folder: Path) -> None:
    from featherface.data.wider_mat import MatImage, write_ground_truth

    attributes = {
        k: np.zeros(1, dtype=np.int64)
        for k in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    }
    keep = {k: np.zeros(0, dtype=np.int64) for k in ("easy", "medium", "hard")}
    wrong = MatImage("0--Parade", "0_Parade_c", np.array([[1, 1, 1, 1]]), attributes, keep)
    write_ground_truth(wider_folder / "eval_tools" / "ground_truth", [wrong])
    with pytest.raises(AnnotationError, match=r"boxes of 0--Parade/0_Parade_c\.jpg differ"):
        read_annotations(wider_folder)


def test_reads_official_val4_with_mat_keep_lists(reference: Path, tmp_path: Path) -> None:
    root = tmp_path / "val4"
    (root / "wider_face_split").mkdir(parents=True)
    shutil.copy(reference / "widerface/val4/wider_face_val_bbx_gt.txt", root / "wider_face_split")
    (root / "WIDER_val").mkdir()
    (root / "WIDER_val" / "images").symlink_to(reference / "widerface/val4/images")
    # keep only the val4 entries of the official ground truth
    from featherface.data.wider_mat import read_ground_truth, write_ground_truth

    names = {
        line.strip()
        for line in (root / "wider_face_split/wider_face_val_bbx_gt.txt").read_text().splitlines()
        if line.endswith(".jpg")
    }
    subset = [
        image
        for image in read_ground_truth(reference / "widerface/ground_truth")
        if image.path in names
    ]
    write_ground_truth(root / "eval_tools" / "ground_truth", subset)
    images, faces = read_annotations(root, splits=("val",))
    assert len(images) == 4 and len(faces) == 328
    kept = {name: int(faces[f"keep_{name}"].sum()) for name in ("easy", "medium", "hard")}
    assert kept == {"easy": 19, "medium": 54, "hard": 321}
