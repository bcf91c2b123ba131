"""The official .mat ground truth: the reference files and a write/read round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featherface.data.wider_mat import MatImage, read_ground_truth, write_ground_truth
from featherface.errors import AnnotationError


def test_reads_official_val_ground_truth(reference: Path) -> None:
    images = read_ground_truth(reference / "widerface" / "ground_truth")
    assert len(images) == 3226
    assert sum(len(image.boxes) for image in images) == 39708
    kept = {s: sum(len(image.keep[s]) for image in images) for s in ("easy", "medium", "hard")}
    assert kept == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert images[0].path == "0--Parade/0_Parade_marchingband_1_465.jpg"
    assert all(len(image.attributes["blur"]) == len(image.boxes) for image in images)


def _image(event: str, name: str, boxes: list, keep: dict) -> MatImage:
    array = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    attributes = {
        k: np.arange(len(array)) % 2
        for k in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    }
    return MatImage(
        event, name, array, attributes, {k: np.array(v, dtype=np.int64) for k, v in keep.items()}
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    images = [
        _image(
            "0--A",
            "a1",
            [[1, 2, 3, 4], [5, 6, 7, 8]],
            {"easy": [0], "medium": [0, 1], "hard": [0, 1]},
        ),
        _image("0--A", "a2", [[9, 9, 9, 9]], {"easy": [], "medium": [], "hard": [0]}),
        _image("1--B", "b1", [[1, 1, 2, 2]], {"easy": [], "medium": [], "hard": []}),
    ]
    write_ground_truth(tmp_path, images)
    again = read_ground_truth(tmp_path)
    assert [image.path for image in again] == ["0--A/a1.jpg", "0--A/a2.jpg", "1--B/b1.jpg"]
    for before, after in zip(images, again, strict=True):
        np.testing.assert_array_equal(before.boxes, after.boxes)
        for setting in ("easy", "medium", "hard"):
            np.testing.assert_array_equal(before.keep[setting], after.keep[setting])
        np.testing.assert_array_equal(before.attributes["blur"], after.attributes["blur"])


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"wider_face_val\.mat: file not found"):
        read_ground_truth(tmp_path)
    (tmp_path / "wider_face_val.mat").write_bytes(b"not a mat file")
    with pytest.raises(AnnotationError, match="not a readable MATLAB file"):
        read_ground_truth(tmp_path)


def test_keep_index_out_of_range(tmp_path: Path) -> None:
    write_ground_truth(
        tmp_path, [_image("0--A", "a", [[1, 2, 3, 4]], {"easy": [], "medium": [], "hard": [0]})]
    )
    import scipy.io

    hard = scipy.io.loadmat(str(tmp_path / "wider_hard_val.mat"))
    hard["gt_list"][0, 0][0, 0] = np.array([[5]], dtype=np.uint16)
    scipy.io.savemat(
        str(tmp_path / "wider_hard_val.mat"),
        {k: v for k, v in hard.items() if not k.startswith("__")},
    )
    with pytest.raises(AnnotationError, match=r"keep index out of range 1\.\.1 for 0--A/a"):
        read_ground_truth(tmp_path)
