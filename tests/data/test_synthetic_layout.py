"""The synthetic set written in the WIDER layout: byte-identical for a seed, read back by the
same readers as the real data."""

from __future__ import annotations

from pathlib import Path

from featherface.data.layout import read_annotations
from featherface.data.prepare import write_synthetic_dataset
from featherface.data.synthetic import SyntheticConfig

TINY = SyntheticConfig(seed=3, num_train=3, num_val=3, max_image_size=360, max_faces=5, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_byte_identical_layout(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "a", TINY)
    write_synthetic_dataset(tmp_path / "b", TINY)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert "eval_tools/ground_truth/wider_hard_val.mat" in first
    assert "retinaface_gt/train/label.txt" in first
    assert first == second


def test_layout_reads_back_with_landmarks_and_keep_lists(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, TINY)
    images, faces = read_annotations(tmp_path)
    assert images["split"].value_counts().to_dict() == {"train": 3, "val": 3}
    assert faces["lm0_x"].notna().all()
    val = faces["image_id"].isin(images.loc[images["split"] == "val", "image_id"])
    assert faces.loc[val, "keep_hard"].notna().all()
    assert faces.loc[~val, "keep_hard"].isna().all()
    assert (faces.loc[val, "keep_easy"] <= faces.loc[val, "keep_hard"]).all()
