"""RetinaFace label.txt: landmarks, missing landmarks, val-style lines, malformed lines."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from featherface.data.retinaface_labels import format_label_file, read_label_file
from featherface.errors import AnnotationError
from tests.helpers import TRAIN_LABELS


def test_reads_landmarks_and_missing_landmarks(tmp_path: Path) -> None:
    path = tmp_path / "label.txt"
    path.write_text(TRAIN_LABELS)
    records = read_label_file(path)
    assert [record.path for record in records] == [
        "0--Parade/0_Parade_a.jpg",
        "1--Handshaking/1_Handshaking_b.jpg",
    ]
    assert records[0].boxes == [(10.0, 12.0, 30.0, 40.0), (50.0, 20.0, 20.0, 25.0)]
    assert records[0].landmarks[0] == (18.0, 25.0, 32.0, 25.0, 25.0, 33.0, 19.0, 42.0, 31.0, 42.0)
    assert all(math.isnan(value) for value in records[0].landmarks[1])
    assert records[1].boxes == []


def test_val_style_header_and_box_only_lines(tmp_path: Path) -> None:
    path = tmp_path / "label.txt"
    path.write_text("# 0--Parade/x.jpg 1024 768\n1 2 3 4\n")
    (record,) = read_label_file(path)
    assert record.path == "0--Parade/x.jpg"
    assert record.boxes == [(1.0, 2.0, 3.0, 4.0)]
    assert all(math.isnan(value) for value in record.landmarks[0])


def test_write_then_read_keeps_values(tmp_path: Path) -> None:
    source = tmp_path / "label.txt"
    source.write_text(TRAIN_LABELS)
    records = read_label_file(source)
    copy = tmp_path / "copy.txt"
    copy.write_text(format_label_file(records))
    again = read_label_file(copy)
    assert [r.boxes for r in again] == [r.boxes for r in records]
    assert again[0].landmarks[0] == records[0].landmarks[0]
    assert all(math.isnan(v) for v in again[0].landmarks[1])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 2 3 4\n", "label.txt:1: face line before the first '# path' line"),
        ("# a.jpg\n1 2 3\n", "label.txt:2: expected 4 or 20 numbers"),
        ("# a.jpg\n1 2 3 x\n", "label.txt:2: face line is not all numbers"),
        ("#\n", "label.txt:1: '#' line without an image path"),
    ],
)
def test_malformed_lines(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "label.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError) as caught:
        read_label_file(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"# a.jpg\n1 2 3 \xff\n", "label.txt:2: not UTF-8 text"),
        (b"# a.jpg\n1 2 3 nan\n", "label.txt:2: face line is not all numbers"),
        (b"# a.jpg\n1 2 3 inf\n", "label.txt:2: face line is not all numbers"),
        (b"# a.jpg\n1 2 3 1e999\n", "label.txt:2: face line has a number out of range"),
        (b"# a.jpg\n1 2 3 1_000\n", "label.txt:2: face line is not all numbers"),
        (b"# a.jpg\n1 2 3 4\xe2\x80\xa8\n# b.jpg\n1 2\n", "label.txt:4: expected 4 or 20"),
    ],
)
def test_bad_bytes_and_numbers(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "label.txt"
    path.write_bytes(content)
    with pytest.raises(AnnotationError) as caught:
        read_label_file(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
