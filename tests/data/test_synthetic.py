"""Tests of the procedural WIDER-FACE-like generator (featherface.data.synthetic)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from featherface.data.schema import (
    ATTRIBUTE_RANGES,
    FACE_COLUMNS,
    IMAGE_COLUMNS,
    KEEP_COLUMNS,
    LANDMARK_COLUMNS,
    conform_faces,
    empty_faces,
)
from featherface.data.synthetic import (
    SyntheticConfig,
    assign_keep_lists,
    difficulty,
    generate_split,
)
from featherface.data.synthetic.face import sample_style
from featherface.data.synthetic.face_render import render_face
from featherface.errors import ParamsError

TINY = SyntheticConfig(
    seed=3,
    num_train=6,
    num_val=6,
    min_image_size=96,
    max_image_size=160,
    max_faces=6,
    max_face_height=60.0,
    workers=1,
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def val_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """40 validation images with the default settings, image ids starting at 100."""
    root = tmp_path_factory.mktemp("val")
    config = SyntheticConfig(num_val=40)
    images, faces = generate_split(root, "val", config, first_image_id=100)
    return root, images, faces


def test_same_seed_gives_identical_files_and_tables_for_any_worker_count(tmp_path: Path) -> None:
    one = generate_split(tmp_path / "one", "val", TINY)
    two = generate_split(tmp_path / "two", "val", replace(TINY, workers=2))
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert len(_files(tmp_path / "one")) == TINY.num_val
    pd.testing.assert_frame_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[1], two[1])


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    generate_split(tmp_path / "a", "val", TINY)
    generate_split(tmp_path / "b", "val", replace(TINY, seed=4))
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(first.values()) != list(second.values())


def test_train_split_has_na_keep_lists_and_reports_progress(tmp_path: Path) -> None:
    seen: list[int] = []
    images, faces = generate_split(tmp_path, "train", TINY, progress=seen.append)
    assert seen == list(range(1, TINY.num_train + 1))
    assert (images["split"] == "train").all()
    for column in KEEP_COLUMNS:
        assert str(faces[column].dtype) == "boolean"
        assert faces[column].isna().all()


def test_tables_conform_to_the_schema(val_set: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    _, images, faces = val_set
    assert {c: str(t) for c, t in images.dtypes.items()} == IMAGE_COLUMNS
    assert {c: str(t) for c, t in faces.dtypes.items()} == FACE_COLUMNS
    assert images["image_id"].tolist() == list(range(100, 140))
    assert images["path"].is_unique
    assert set(faces["image_id"]) <= set(images["image_id"])
    for column, (low, high) in ATTRIBUTE_RANGES.items():
        assert faces[column].between(low, high).all(), column
    assert not faces[list(LANDMARK_COLUMNS)].isna().any().any()


def test_images_decode_with_the_recorded_size(
    val_set: tuple[Path, pd.DataFrame, pd.DataFrame],
) -> None:
    root, images, _ = val_set
    config = SyntheticConfig()
    for row in images.itertuples():
        assert row.path.startswith(f"{row.event}/")
        with Image.open(root / row.path) as image:
            assert image.format == "JPEG"
            assert image.size == (row.width, row.height)
            assert "exif" not in image.info
        assert config.min_image_size <= row.width <= config.max_image_size
        assert config.min_image_size <= row.height <= config.max_image_size


def test_boxes_landmarks_counts_and_heights(
    val_set: tuple[Path, pd.DataFrame, pd.DataFrame],
) -> None:
    _, images, faces = val_set
    config = SyntheticConfig()
    merged = faces.merge(images[["image_id", "width", "height"]], on="image_id")
    assert (merged["w"] >= 1).all() and (merged["h"] >= 1).all()
    assert (merged["x"] >= 0).all() and (merged["y"] >= 0).all()
    assert (merged["x"] + merged["w"] <= merged["width"]).all()
    assert (merged["y"] + merged["h"] <= merged["height"]).all()
    xs = merged[list(LANDMARK_COLUMNS[0::2])].to_numpy()
    ys = merged[list(LANDMARK_COLUMNS[1::2])].to_numpy()
    tolerance = 1.0
    assert (xs >= merged[["x"]].to_numpy() - tolerance).all()
    assert (xs <= (merged["x"] + merged["w"]).to_numpy()[:, None] + tolerance).all()
    assert (ys >= merged[["y"]].to_numpy() - tolerance).all()
    assert (ys <= (merged["y"] + merged["h"]).to_numpy()[:, None] + tolerance).all()
    assert (xs[:, 0] < xs[:, 1]).mean() > 0.95
    counts = faces.groupby("image_id").size().reindex(images["image_id"], fill_value=0)
    assert counts.between(config.min_faces, config.max_faces).all()
    for _, group in faces.groupby("image_id"):
        assert group["face_index"].tolist() == list(range(len(group)))
    assert faces["h"].min() >= int(config.min_face_height)
    assert faces["h"].max() <= config.max_face_height + 2


def test_keep_lists_are_nested_and_fractions_are_sane(
    val_set: tuple[Path, pd.DataFrame, pd.DataFrame],
) -> None:
    _, _, faces = val_set
    easy, medium, hard = (faces[column].astype(bool) for column in KEEP_COLUMNS)
    assert not faces[list(KEEP_COLUMNS)].isna().any().any()
    assert not (easy & ~medium).any()
    assert not (medium & ~hard).any()
    assert 0.05 <= easy.mean() <= 0.4
    assert 0.2 <= medium.mean() <= 0.65
    assert 0.6 <= hard.mean() <= 1.0
    assert not hard[faces["invalid"] == 1].any()


def test_assign_keep_lists_rules_on_a_hand_made_table() -> None:
    base = {
        "image_id": 0,
        "x": 0,
        "y": 0,
        "w": 10,
        **{c: 1.0 for c in LANDMARK_COLUMNS},
        "blur": 0,
        "expression": 0,
        "illumination": 0,
        "invalid": 0,
        "occlusion": 0,
        "pose": 0,
    }
    medium_h, easy_h = difficulty.MEDIUM_MIN_HEIGHT, difficulty.EASY_MIN_HEIGHT
    rows = [
        {"h": easy_h},  # easy, medium, hard
        {"h": easy_h - 1},  # medium, hard
        {"h": easy_h, "pose": 1},  # medium, hard
        {"h": easy_h, "occlusion": 1},  # medium, hard
        {"h": easy_h, "expression": 1},  # expression does not matter
        {"h": easy_h, "occlusion": 2},  # hard only
        {"h": easy_h, "blur": 2},  # hard only
        {"h": medium_h - 1},  # hard only
        {"h": difficulty.HARD_MIN_HEIGHT},  # hard only
        {"h": difficulty.HARD_MIN_HEIGHT - 1},  # none
        {"h": 200, "invalid": 1},  # none
    ]
    table = pd.DataFrame([{**base, "face_index": i, **row} for i, row in enumerate(rows)])
    for column in KEEP_COLUMNS:
        table[column] = pd.array([pd.NA] * len(table), dtype="boolean")
    result = conform_faces(assign_keep_lists(conform_faces(table)))
    assert result["keep_easy"].tolist() == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    assert result["keep_medium"].tolist() == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    assert result["keep_hard"].tolist() == [True] * 9 + [False, False]
    assert str(result["keep_easy"].dtype) == "boolean"
    assert len(assign_keep_lists(empty_faces())) == 0


@pytest.mark.parametrize("rotation", [0.0, 25.0, -30.0])
def test_eye_landmarks_fall_on_the_pupils(rotation: float) -> None:
    style = replace(sample_style(np.random.default_rng(7), 0.0), glasses="", eye_open=1.0)
    patch = render_face(style, 160.0, rotation, 0.9, 0.0)
    grey = np.asarray(patch.image.convert("L"), dtype=np.float64)
    for x, y in patch.landmarks[:2]:
        top, left = int(y) - 4, int(x) - 4
        window = grey[top : top + 9, left : left + 9]
        rows, cols = np.nonzero(window < 25)
        assert len(rows) >= 4
        centre = (left + cols.mean() + 0.5, top + rows.mean() + 0.5)
        assert np.hypot(centre[0] - x, centre[1] - y) < 1.0


def test_upright_head_box_matches_the_requested_height() -> None:
    style = sample_style(np.random.default_rng(1), 0.0)
    patch = render_face(style, 100.0, 0.0, 1.0, 0.0)
    x0, y0, x1, y1 = patch.head
    assert y1 - y0 == pytest.approx(100.0, abs=0.5)
    assert x1 - x0 == pytest.approx(100.0 * style.aspect, abs=0.5)
    rotated = render_face(style, 100.0, 20.0, 0.8, 2.0)
    assert rotated.head[3] - rotated.head[1] == pytest.approx(100.0, abs=0.5)


@pytest.mark.parametrize(
    "override",
    [
        {"min_image_size": 600, "max_image_size": 500},
        {"min_faces": 0},
        {"blur_prob": 1.5},
        {"workers": 0},
        {"seed": 1.5},
        {"seed": -1},
        {"jpeg_quality": 100},
    ],
)
def test_config_rejects_bad_values(override: dict[str, object]) -> None:
    with pytest.raises(ParamsError):
        SyntheticConfig(**override)  # type: ignore[arg-type]
