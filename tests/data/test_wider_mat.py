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


def test_unknown_element_type_is_refused_not_a_crash(tmp_path: Path) -> None:
    """scipy's compiled reader indexes a table with the element type of a numeric array; type
    252 read past it and killed the process (SIGSEGV). The reader runs in a child process here so
    that a crash fails this test instead of ending the test run."""
    import subprocess
    import sys

    write_ground_truth(
        tmp_path, [_image("0--A", "a", [[1, 2, 3, 4]], {"easy": [], "medium": [], "hard": [0]})]
    )
    hard = tmp_path / "wider_hard_val.mat"
    data = hard.read_bytes()
    tag = data.rindex(b"\x04\x00\x02\x00")  # the uint16 keep index [[1]], a small data element
    hard.write_bytes(data[:tag] + b"\xfc\x00\x02\x00" + data[tag + 4 :])
    code = (
        "import sys\n"
        "from featherface.data.wider_mat import read_ground_truth\n"
        "from featherface.errors import FeatherFaceError\n"
        "try:\n"
        "    read_ground_truth(sys.argv[1])\n"
        "except FeatherFaceError as error:\n"
        "    print(error)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, (child.returncode, child.stderr[-500:])
    assert child.stdout.startswith(f"{hard}: not a readable MATLAB file (element type 252")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("event_list", np.zeros((0, 0)), "event_list is not a cell array"),
        ("face_bbx_list", "dropped", "face_bbx_list has 0 entries, expected 1"),
        ("file_list", "empty name", "file_list entry 1.1 is not a non-empty string"),
        ("face_bbx_list", "three numbers", "face_bbx_list of 0--A/a: 3 numbers"),
        ("face_bbx_list", "nan", "face_bbx_list of 0--A/a holds values that are not whole"),
        ("blur_label_list", "two values", "blur of 0--A/a: 2 values for 1 boxes"),
    ],
)
def test_wrong_contents_name_the_file(
    tmp_path: Path, variable: str, value: object, fragment: str
) -> None:
    import scipy.io

    write_ground_truth(
        tmp_path, [_image("0--A", "a", [[1, 2, 3, 4]], {"easy": [], "medium": [], "hard": [0]})]
    )
    main = tmp_path / "wider_face_val.mat"
    content = {k: v for k, v in scipy.io.loadmat(str(main)).items() if not k.startswith("__")}
    leaf = {
        "empty name": np.array([""]),
        "three numbers": np.array([[1, 2, 3]]),
        "nan": np.array([[1.0, np.nan, 3.0, 4.0]]),
        "two values": np.array([[0], [1]], dtype=np.uint8),
    }
    if isinstance(value, np.ndarray):
        content[variable] = value
    elif value == "dropped":
        content[variable] = np.empty((0, 1), dtype=object)
    else:
        content[variable][0, 0][0, 0] = leaf[value]
    scipy.io.savemat(str(main), content)
    with pytest.raises(AnnotationError) as caught:
        read_ground_truth(tmp_path)
    assert str(caught.value).startswith(f"{main}: {fragment}")
