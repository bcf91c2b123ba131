"""Fuzzed boundaries of the annotation readers: a valid file, mutated at random, reads either into
well-formed records or into one :class:`FeatherFaceError` line that names the file (and, for the
text formats, a line of it); never into another exception, and never crashes the process.

Mutations: truncation, lines deleted, duplicated, swapped or inserted, fields swapped, dropped,
added or replaced (non-numeric, NaN, inf, negative, huge, Python-only spellings such as ``1_000``),
raw bytes inserted (invalid UTF-8, NUL, exotic line separators); for ``.mat`` files bytes and
32-bit words overwritten (element tags, sizes, dimensions), bytes inserted and deleted.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from featherface.data.retinaface_labels import read_label_file
from featherface.data.wider_mat import (
    GROUND_TRUTH_FILE,
    KEEP_FILES,
    MatImage,
    read_ground_truth,
    write_ground_truth,
)
from featherface.data.wider_txt import read_split_text
from featherface.errors import FeatherFaceError
from tests.helpers import SPLIT_TEXT, TRAIN_LABELS

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
INT64 = 2**63

SPLIT_FILE = (SPLIT_TEXT["train"] + SPLIT_TEXT["val"]).encode()
LABEL_FILE = (TRAIN_LABELS + "# 2--Demo/2_Demo_c.jpg 1024 768\n5 5 40 50\n60 10 12 14\n").encode()

FIELDS = [
    b"x", b"1.5", b"nan", b"NaN", b"inf", b"-inf", b"1e999", b"-1e999", b"-60", b"-1", b"0",
    b"99999999999999999999999", b"-9223372036854775809", b"9223372036854775807", b"1_000",
    "\u0663".encode(), "\uff11".encode(), b"0x10", b"+7", b"1e5", b".5", b"--1", b"\xff",
    b"\xc3\x28", b"a/b.jpg", b"#", b"",
]  # fmt: skip
RAW = [
    b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\r\n", b"\x0c", b"\x0b", b"\x1c",
    "\u2028".encode(), b"\x85", b"\n", b" ", b"\t", b"#", b"\xef\xbb\xbf", b".jpg",
]  # fmt: skip
TEXT_EDITS = (
    *("truncate", "delete", "duplicate", "insert", "swap lines", "swap fields", "replace field"),
    *("drop field", "add field", "raw bytes", "random bytes"),
)
LINES = [b"", b"abc", b"1 2 3", b"0--x/y.jpg", b"# a.jpg", b"7", b"-3", b"1 2 3 4", b"0 " * 10]


def mutate_text(data: bytes, draw) -> bytes:
    """Apply one to five random edits to ``data`` (bytes, so invalid UTF-8 can appear)."""
    for _ in range(draw(st.integers(1, 5))):
        lines = data.split(b"\n")
        line = draw(st.integers(0, max(len(lines) - 1, 0)))
        kind = draw(st.sampled_from(TEXT_EDITS))
        fields = lines[line].split(b" ") if lines else [b""]
        index = draw(st.integers(0, max(len(fields) - 1, 0)))
        if kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
            continue
        if kind == "delete" and lines:
            del lines[line]
        elif kind == "duplicate" and lines:
            lines.insert(line, lines[line])
        elif kind == "insert":
            lines.insert(line, draw(st.sampled_from(LINES)))
        elif kind == "swap lines" and lines:
            other = draw(st.integers(0, len(lines) - 1))
            lines[line], lines[other] = lines[other], lines[line]
        elif kind == "swap fields":
            other = draw(st.integers(0, len(fields) - 1))
            fields[index], fields[other] = fields[other], fields[index]
        elif kind == "replace field":
            fields[index] = draw(st.sampled_from(FIELDS))
        elif kind == "drop field":
            del fields[index]
        elif kind == "add field":
            fields.insert(index, draw(st.sampled_from(FIELDS)))
        elif kind in ("raw bytes", "random bytes"):
            text = lines[line] if lines else b""
            at = draw(st.integers(0, len(text)))
            extra = draw(st.sampled_from(RAW) if kind == "raw bytes" else st.binary(max_size=6))
            lines[line if lines else 0 : line + 1] = [text[:at] + extra + text[at:]]
        if kind in ("swap fields", "replace field", "drop field", "add field") and lines:
            lines[line] = b" ".join(fields)
        data = b"\n".join(lines)
    return data


def outcome(error: FeatherFaceError | None, path: Path) -> None:
    """Count parses and kinds of errors in ``--hypothesis-show-statistics``."""
    if error is None:
        event("parsed")
        return
    problem = re.sub(r"^:[0-9]+", "", str(error).removeprefix(str(path))).removeprefix(": ")
    event("error: " + re.sub(r"[0-9]+", "#", re.split(r"'|: |, got", problem)[0])[:60])


def check_line_error(error: FeatherFaceError, path: Path, data: bytes) -> None:
    """One line, ``<path>:<line>: <problem>``, the line within the file."""
    outcome(error, path)
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    match = re.match(rf"{re.escape(str(path))}:(\d+): \S", message)
    assert match, message
    assert 1 <= int(match.group(1)) <= data.count(b"\n") + 1, message


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_wider_split_file_fuzz(folder: Path, data) -> None:
    content = mutate_text(SPLIT_FILE, data.draw)
    path = folder / "wider_face_train_bbx_gt.txt"
    path.write_bytes(content)
    try:
        records = read_split_text(path)
    except FeatherFaceError as error:
        check_line_error(error, path, content)
        return
    outcome(None, path)
    for record in records:
        assert record.path.lower().endswith((".jpg", ".jpeg", ".png"))
        for face in record.faces:
            assert len(face) == 10
            assert all(isinstance(value, int) and -INT64 <= value < INT64 for value in face)


@FUZZ
@given(data=st.data())
def test_retinaface_label_file_fuzz(folder: Path, data) -> None:
    content = mutate_text(LABEL_FILE, data.draw)
    path = folder / "label.txt"
    path.write_bytes(content)
    try:
        records = read_label_file(path)
    except FeatherFaceError as error:
        check_line_error(error, path, content)
        return
    outcome(None, path)
    for record in records:
        assert record.path and len(record.boxes) == len(record.landmarks)
        for box, landmarks in zip(record.boxes, record.landmarks, strict=True):
            assert len(box) == 4 and all(math.isfinite(value) for value in box)
            assert len(landmarks) == 10
            assert all(math.isfinite(value) or math.isnan(value) for value in landmarks)


def _mat_image(event: str, name: str, boxes: list, keep: dict) -> MatImage:
    array = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    attributes = {
        k: np.arange(len(array)) % 2
        for k in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    }
    keep = {k: np.array(v, dtype=np.int64) for k, v in keep.items()}
    return MatImage(event, name, array, attributes, keep)


@pytest.fixture(scope="module")
def mat_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The four .mat files of a small ground truth, as written by ``write_ground_truth``."""
    images = [
        _mat_image(
            "0--A", "a1", [[1, 2, 3, 4], [5, 6, 7, 8]], {"easy": [0], "medium": [0], "hard": [0, 1]}
        ),
        _mat_image("0--A", "a2", [[9, 9, 9, 9]], {"easy": [], "medium": [], "hard": [0]}),
        _mat_image("1--B", "b1", [], {"easy": [], "medium": [], "hard": []}),
    ]
    folder = tmp_path_factory.mktemp("mat")
    write_ground_truth(folder, images)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


WORDS = [b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00"]
WORDS += [b"\x0b\x00\x00\x00", b"\xfc\x00\x00\x00", b"\x0e\x00\x00\x00", b"\x00\x00\x01\x00"]


def mutate_binary(data: bytes, draw) -> bytes:
    """Apply one to four random edits to the bytes of a .mat file."""
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["truncate", "byte", "bit", "word", "insert", "delete"]))
        if kind == "truncate":
            data = data[:at]
        elif kind == "byte":
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "bit":
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif kind == "word":  # aligned, where the tags, sizes and dimensions are
            at -= at % 4
            data = data[:at] + draw(st.sampled_from(WORDS)) + data[at + 4 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 16)) :]
    return data


def check_ground_truth(ground_truth: Path) -> None:
    """``read_ground_truth`` gives consistent images or one error line naming a .mat file."""
    try:
        images = read_ground_truth(ground_truth)
    except FeatherFaceError as error:
        outcome(error, Path(str(error).split(": ", 1)[0]))
        message = str(error)
        assert "\n" not in message, message
        names = [GROUND_TRUTH_FILE, *KEEP_FILES.values()]
        assert any(message.startswith(f"{ground_truth / name}: ") for name in names), message
        return
    outcome(None, ground_truth)
    for image in images:
        assert image.event and image.name
        assert image.boxes.dtype == np.int64 and image.boxes.shape[1:] == (4,)
        assert all(len(values) == len(image.boxes) for values in image.attributes.values())
        for indices in image.keep.values():
            assert ((indices >= 0) & (indices < len(image.boxes))).all()


@FUZZ
@given(data=st.data())
def test_wider_mat_fuzz(folder: Path, mat_files: dict[str, bytes], data) -> None:
    target = data.draw(st.sampled_from(sorted(mat_files)))
    mutated = mutate_binary(mat_files[target], data.draw)
    ground_truth = folder / "ground_truth"
    ground_truth.mkdir(exist_ok=True)
    for name, content in mat_files.items():
        (ground_truth / name).write_bytes(mutated if name == target else content)
    check_ground_truth(ground_truth)


def _cells(*items: object) -> np.ndarray:
    column = np.empty((len(items), 1), dtype=object)
    for index, item in enumerate(items):
        column[index, 0] = item
    return column


CONTENT = [
    np.array([[np.nan, 1, 2, 3]]), np.array([[1.5, 2, 3, 4]]), np.array([[1e30, 1, 1, 1]]),
    np.array([[np.inf]]), np.array([[1, 2, 3]]), np.zeros((0, 0)), np.array(["x"]),
    np.array([""]), np.array([[-5]]), np.array([[300]]), np.array([[2**64 - 1]], np.uint64),
    np.array([[1, 2], [3, 4]]), 3.0, "text", _cells(np.array([[1]])), _cells(), _cells("a", "b"),
]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_wider_mat_content_fuzz(folder: Path, mat_files: dict[str, bytes], data) -> None:
    """Well-formed .mat files whose variables have the wrong shape, type, length or values."""
    import io

    import scipy.io

    target = data.draw(st.sampled_from([GROUND_TRUTH_FILE] * 3 + sorted(KEEP_FILES.values())))
    content = scipy.io.loadmat(io.BytesIO(mat_files[target]))
    content = {key: value for key, value in content.items() if not key.startswith("__")}
    read = sorted(content) if target == GROUND_TRUTH_FILE else ["gt_list"]  # what the reader reads
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(read))
        events = np.asarray(content[key]).ravel()
        level = data.draw(st.sampled_from(["variable", "event", "image", "delete", "append"]))
        value = copy.deepcopy(data.draw(st.sampled_from(CONTENT)))  # never shared, never cyclic
        e = data.draw(st.integers(0, len(events) - 1)) if len(events) else 0
        inner = events[e].ravel() if len(events) and isinstance(events[e], np.ndarray) else None
        if level == "variable" or not len(events) or events.dtype != object:
            content[key] = value
        elif level == "event":
            events[e] = value
        elif level == "image" and inner is not None and inner.dtype == object and len(inner):
            inner[data.draw(st.integers(0, len(inner) - 1))] = value
        elif level == "delete":
            content[key] = _cells(*(item for index, item in enumerate(events) if index != e))
        elif level == "append":
            content[key] = _cells(*events, value)
    ground_truth = folder / "content"
    ground_truth.mkdir(exist_ok=True)
    for name, original in mat_files.items():
        (ground_truth / name).write_bytes(original)
    scipy.io.savemat(ground_truth / target, content)
    check_ground_truth(ground_truth)
