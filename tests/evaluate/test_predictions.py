"""Prediction files: the official reader on edge cases, the writer, the folder reader."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from featherface.errors import AnnotationError, FeatherFaceError
from featherface.evaluate.predictions import (
    EvaluationWarning,
    format_prediction_file,
    parse_prediction_text,
    prediction_array,
    prediction_path,
    read_prediction_dir,
    read_prediction_file,
    write_prediction_file,
)

EDGE_CASES = (
    "0--Parade/0_Parade_a.jpg\n"  # a name line written as event/name.jpg
    "7\n"  # a wrong count: ignored
    "5 6 7 8 0.25 \n"  # trailing space
    "\n"  # blank line: skipped
    " 9 9 9 9 0.99\n"  # a line starting with a space: its first field is empty, skipped
    "1.5 2.5 0 -3 0.75 extra fields\n"  # zero and negative sizes; extra fields ignored
    "5 6 7 8 0.25\n"  # a duplicate, kept
    "-20 -20 4 4 0.5\n"  # outside the image
    "\n"
)


def test_parse_follows_the_official_reader() -> None:
    key, boxes = parse_prediction_text(EDGE_CASES, "x.txt")
    assert key == "0_Parade_a"
    expected = [
        [5, 6, 7, 8, 0.25],
        [1.5, 2.5, 0, -3, 0.75],
        [5, 6, 7, 8, 0.25],
        [-20, -20, 4, 4, 0.5],
    ]
    np.testing.assert_array_equal(boxes, np.array(expected))
    assert boxes.dtype == np.float64


@pytest.mark.parametrize("text", ["a\n0\n", "a\n", "a\n3\n\n\n"])
def test_files_without_box_lines_are_empty(text: str) -> None:
    key, boxes = parse_prediction_text(text, "a.txt")
    assert key == "a"
    assert boxes.shape == (0, 5)


@pytest.mark.parametrize(
    "line",
    ["1 2 3 4", "1 2 x 4 0.5", "1  2 3 4 0.5", "1,2,3,4,0.5"],
    ids=["four fields", "not a number", "double space", "commas"],
)
def test_malformed_lines_name_the_file_and_line(line: str) -> None:
    with pytest.raises(AnnotationError, match=r"^a\.txt:4: expected 'x y w h score'") as error:
        parse_prediction_text(f"a\n2\n1 1 1 1 0.5\n{line}\n", "a.txt")
    assert error.value.line == 4


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1 2 3 4 nan", "score is nan"),
        ("1 2 3 4 NaN ", "score is nan"),
        ("1 2 3 4 inf", "score is inf"),
        ("1 2 3 4 -Infinity", "score is -inf"),
        ("1 2 3 4 1e999", "score is inf"),
        ("nan 2 3 4 0.5", "x is nan"),
        ("1 -inf 3 4 0.5", "y is -inf"),
        ("1 2 inf 4 0.5", "w is inf"),
        ("1 2 3 -nan 0.5", "h is nan"),
        ("1 2 3 " + "9" * 400 + " 0.5", "h is inf"),
    ],
)
def test_non_finite_values_name_the_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    # The official reader accepts these; one such score makes every AP of the set 0.
    path = _write(tmp_path, "0--Parade", "x", f"x\n3\n1 1 5 5 0.9\n{line}\n2 2 5 5 0.8\n")
    expected = rf"^{re.escape(str(path))}:4: {re.escape(problem)}, not a finite number$"
    with pytest.raises(AnnotationError, match=expected) as error:
        read_prediction_file(path)
    assert error.value.line == 4
    with pytest.raises(AnnotationError, match=expected):
        read_prediction_dir(tmp_path, {"0--Parade": ["x"]}, missing_as_empty=True)


def test_the_first_bad_line_in_file_order_is_named() -> None:
    text = "a\n3\n1 1 5 5 0.9\n1 1 5 5 inf\n1 1 5 5\n1 1 5 5 nan\n"
    with pytest.raises(AnnotationError, match=r"^a\.txt:4: score is inf, not a finite number$"):
        parse_prediction_text(text, "a.txt")
    text = "a\n3\n1 1 5 5\n1 1 5 5 inf\n"
    with pytest.raises(AnnotationError, match=r"^a\.txt:3: expected 'x y w h score'"):
        parse_prediction_text(text, "a.txt")


def test_negative_and_huge_finite_values_are_kept() -> None:
    # Boxes outside the image, degenerate boxes and negative scores are valid input officially.
    text = "a\n3\n-5 -6 -7 0 -0.5\n1e308 -1e308 1 1 -1e300\n0 0 1 1 1.5\n"
    _, boxes = parse_prediction_text(text, "a.txt")
    expected = [[-5, -6, -7, 0, -0.5], [1e308, -1e308, 1, 1, -1e300], [0, 0, 1, 1, 1.5]]
    np.testing.assert_array_equal(boxes, expected)


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (b"a\n1\n1 1 5 5 0.\xff9\n", 3, 11),
        (b"\xc3(\n0\n", 1, 1),
        (b"a\r\n1\r\n1 1 5 5 0.9\r\n\xe2\x82\n", 4, 1),
        (b"a\r1\r\xed\xa0\x80\n", 3, 1),
    ],
    ids=["in a box line", "in the name", "after CRLF lines", "surrogate after CR lines"],
)
def test_bytes_that_are_not_utf8_name_line_and_column(
    tmp_path: Path, data: bytes, line: int, column: int
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(data)
    expected = rf"^{re.escape(str(path))}:{line}: not UTF-8 text: byte 0x.. at column {column}$"
    with pytest.raises(AnnotationError, match=expected):
        read_prediction_file(path)


def test_read_file_refuses_empty_and_absent_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(AnnotationError, match=r"empty\.txt: empty prediction file \(0 bytes\)"):
        read_prediction_file(tmp_path / "empty.txt")
    with pytest.raises(AnnotationError, match="prediction file not found"):
        read_prediction_file(tmp_path / "absent.txt")


def test_write_format_is_the_reference_inference_format(tmp_path: Path) -> None:
    corners = np.array([[10.7, 20.2, 30.9, 45.5], [-1.5, 0.4, 3.99, 2.0]], dtype=np.float32)
    scores = np.array([0.962055, 0.0251], dtype=np.float32)
    text = format_prediction_file("0_Parade_a", corners, scores)
    # int() truncates toward zero; w, h are differences of the truncated corners.
    assert text == "0_Parade_a\n2\n10 20 20 25 0.962055 \n-1 0 4 2 0.0251 \n"
    path = prediction_path(tmp_path, "0--Parade", "0_Parade_a")
    write_prediction_file(path, "0_Parade_a", corners, scores)
    assert path.read_text() == text
    assert sorted(tmp_path.rglob("*")) == [path.parent, path]


def test_in_memory_form_equals_written_and_read_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(-5, 900, (50, 2, 2)), axis=1).reshape(50, 4)[:, [0, 2, 1, 3]]
    scores = rng.uniform(0.02, 1, 50)
    path = tmp_path / "e" / "a.txt"
    write_prediction_file(path, "a", corners, scores)
    key, boxes = read_prediction_file(path)
    assert key == "a"
    np.testing.assert_array_equal(prediction_array(corners, scores), boxes)


def test_writer_reproduces_the_reference_prediction_files(reference: Path) -> None:
    files = sorted((reference / "widerface" / "val4" / "reference_predictions").rglob("*.txt"))
    assert len(files) == 8
    for path in files:
        text = path.read_text()
        key, boxes = parse_prediction_text(text, path)
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]], axis=1)
        assert format_prediction_file(key, corners, boxes[:, 4].astype(np.float32)) == text


def test_mismatched_lengths_and_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        prediction_array(np.zeros((2, 4)), np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        prediction_array(np.array([[0, 0, np.inf, 1]]), np.ones(1))


def _write(folder: Path, event: str, name: str, text: str) -> Path:
    path = folder / event / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_dir_keys_by_name_line_and_keeps_file_order(tmp_path: Path) -> None:
    _write(tmp_path, "0--A", "a", "a\n2\n1 1 5 5 0.2\n2 2 5 5 0.9\n")
    _write(tmp_path, "0--A", "renamed", "0--A/b.jpg\n0\n")
    (tmp_path / "0--A" / "notes.md").write_text("not a prediction file")
    (tmp_path / "manifest.json").write_text("{}")
    predictions = read_prediction_dir(tmp_path, {"0--A": ["a", "b"]})
    assert list(predictions) == ["0--A"]
    assert sorted(predictions["0--A"]) == ["a", "b"]
    np.testing.assert_array_equal(predictions["0--A"]["a"][:, 4], [0.2, 0.9])


def test_two_files_naming_the_same_image_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "0--A", "a", "a\n0\n")
    _write(tmp_path, "0--A", "b", "a\n0\n")
    with pytest.raises(AnnotationError, match=r"b\.txt:1: image 'a' is already named by a\.txt"):
        read_prediction_dir(tmp_path)


def test_missing_and_empty_files_are_listed_in_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "0--A", "a", "a\n1\n1 1 5 5 0.9\n")
    _write(tmp_path, "0--A", "b", "")
    expected = {"0--A": ["a", "b", "c"], "1--B": ["d"]}
    with pytest.raises(FeatherFaceError) as error:
        read_prediction_dir(tmp_path, expected)
    message = str(error.value)
    assert "\n" not in message
    assert "3 prediction files missing or empty" in message
    assert "0--A/b.txt (empty)" in message
    assert "0--A/c.txt (missing)" in message
    assert "1--B/d.txt (missing)" in message
    assert message.endswith("; use --missing-as-empty to count them as images without detections")
    assert "missing_as_empty" not in message  # users type the flag, not the Python argument
    predictions = read_prediction_dir(tmp_path, expected, missing_as_empty=True)
    assert {name: boxes.shape for name, boxes in predictions["0--A"].items()} == {
        "a": (1, 5),
        "b": (0, 5),
        "c": (0, 5),
    }
    assert predictions["1--B"]["d"].shape == (0, 5)


def test_empty_file_is_an_error_without_expected_names(tmp_path: Path) -> None:
    _write(tmp_path, "0--A", "b", "")
    with pytest.raises(FeatherFaceError, match=r"0--A/b\.txt \(empty\)"):
        read_prediction_dir(tmp_path)
    assert read_prediction_dir(tmp_path, missing_as_empty=True)["0--A"]["b"].shape == (0, 5)


def test_missing_as_empty_warns_when_most_images_have_no_file(tmp_path: Path) -> None:
    _write(tmp_path, "0--A", "a", "a\n1\n1 1 5 5 0.9\n")
    _write(tmp_path, "0--A", "b", "b\n1\n1 1 5 5 0.9\n")
    expected = {"0--A": ["a", "b", "c"], "1--B": [f"d{index}" for index in range(3)]}
    with pytest.warns(EvaluationWarning) as caught:
        read_prediction_dir(tmp_path, expected, missing_as_empty=True)
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith(
        f"4 of 6 ground-truth images have no prediction file in {tmp_path} and count as images "
        "without detections (--missing-as-empty)"
    )
    assert "\n" not in message
    assert warning.filename == __file__  # points at the caller
    # Half or fewer missing: the option's ordinary use, no warning.
    _write(tmp_path, "1--B", "d0", "d0\n0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvaluationWarning)
        read_prediction_dir(tmp_path, expected, missing_as_empty=True)


def test_long_lists_are_cut_with_a_count(tmp_path: Path) -> None:
    tmp_path.joinpath("0--A").mkdir()
    expected = {"0--A": [f"i{index}" for index in range(8)]}
    with pytest.raises(FeatherFaceError, match=r"i4\.txt \(missing\) and 3 more;"):
        read_prediction_dir(tmp_path, expected)


def test_malformed_file_in_folder_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "0--A", "a", "a\n1\n1 1 5 0.9\n")
    with pytest.raises(AnnotationError, match=rf"^{re.escape(str(path))}:3: "):
        read_prediction_dir(tmp_path)


def test_absent_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FeatherFaceError, match="prediction folder not found"):
        read_prediction_dir(tmp_path / "absent")
