"""The official split text format: parsing, malformed files, exact round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from featherface.data.wider_txt import (
    ImageRecord,
    SplitTextError,
    format_split_text,
    parse_split_text,
    read_split_text,
)
from featherface.errors import AnnotationError
from tests.helpers import SPLIT_TEXT


def test_parses_faces_and_zero_face_images() -> None:
    records = parse_split_text(SPLIT_TEXT["train"])
    assert [record.path for record in records] == [
        "0--Parade/0_Parade_a.jpg",
        "1--Handshaking/1_Handshaking_b.jpg",
    ]
    assert records[0].faces == [
        (10, 12, 30, 40, 0, 0, 0, 0, 0, 0),
        (50, 20, 20, 25, 1, 0, 0, 0, 1, 0),
    ]
    assert records[1].faces == []
    assert [record.line for record in records] == [1, 5]


def test_round_trip_is_exact() -> None:
    for text in SPLIT_TEXT.values():
        assert format_split_text(parse_split_text(text)) == text


def test_zero_face_image_without_zero_line_is_accepted() -> None:
    records = parse_split_text("a/x.jpg\n0\nb/y.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")
    assert [len(record.faces) for record in records] == [0, 1]


def test_official_val4_file_round_trips(reference: Path) -> None:
    path = reference / "widerface" / "val4" / "wider_face_val_bbx_gt.txt"
    records = read_split_text(path)
    assert len(records) == 4
    assert sum(len(record.faces) for record in records) == 328
    assert format_split_text(records) == path.read_text()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0 \n", 2, "file ends after 1"),
        ("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0 \nb/y.jpg\n0\n", 2, "but 1 face lines follow"),
        (
            "a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0 \n5 6 7 8 0 0 0 0 0 0 \n",
            4,
            "count line at 2 disagrees",
        ),
        ("a/x.jpg\ntwo\n", 2, "expected a face count"),
        ("a/x.jpg\n1\n1 2 3 4 0 0\n", 3, "expected 10 integers"),
        ("a/x.jpg\n1\n1 2 3 4.5 0 0 0 0 0 0\n", 3, "not all integers"),
        ("a/x.jpg\n", 1, "file ends before the face count"),
        ("a/x.jpg\n-1\n", 2, "negative face count"),
        ("a/x.jpg\n0\n1 0 0 0 0 0 0 0 0 0\n", 3, "non-zero face line"),
    ],
)
def test_malformed_files_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(SplitTextError) as caught:
        parse_split_text(text)
    assert caught.value.line == line
    assert fragment in caught.value.problem


def test_read_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_text("a/x.jpg\n3\n1 2 3 4 0 0 0 0 0 0 \n")
    with pytest.raises(AnnotationError, match=r"wider_face_val_bbx_gt.txt:2: count line says 3"):
        read_split_text(path)
    with pytest.raises(AnnotationError, match="file not found"):
        read_split_text(tmp_path / "missing.txt")


def test_writer_emits_zero_line_for_empty_image() -> None:
    assert format_split_text([ImageRecord("a/x.jpg")]) == "a/x.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0 \nb/\xffy.jpg\n0\n", ":4: not UTF-8 text"),
        (b"a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0 \xe2\x80\xa8\nb/y.jpg\nxx\n", ":5: expected a face"),
        (b"a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0 \x0c\nb/y.jpg\nxx\n", ":5: expected a face count"),
        (b"a/x.jpg\n1\n1 2 3 99999999999999999999 0 0 0 0 0 0\n", ":3: face line has a number"),
        (b"a/x.jpg\n1\n1 2 3 1_000 0 0 0 0 0 0\n", ":3: face line is not all integers"),
        ("a/x.jpg\n\u0663\n".encode(), ":2: expected a face count"),
    ],
)
def test_bad_bytes_and_numbers_name_the_line(tmp_path: Path, content: bytes, expected: str) -> None:
    """Lines are counted at \\n as editors count them (not at U+2028 or form feeds), and numbers
    are plain int64 decimals."""
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_bytes(content)
    with pytest.raises(AnnotationError) as caught:
        read_split_text(path)
    assert str(caught.value).startswith(f"{path}{expected}")
    assert "\n" not in str(caught.value)


def test_byte_order_mark_and_crlf_are_read(tmp_path: Path) -> None:
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_bytes(b"\xef\xbb\xbfa/x.jpg\r\n1\r\n1 2 3 4 0 0 0 0 0 0 \r\n")
    (record,) = read_split_text(path)
    assert record.path == "a/x.jpg" and record.faces == [(1, 2, 3, 4, 0, 0, 0, 0, 0, 0)]
