"""Property-based fuzzing of the prediction-folder reader.

A valid prediction file (name line, count line, ``x y w h score`` lines) is mutated at random:
truncated, fields swapped or replaced by non-numbers, NaN, infinities, negative or huge numbers,
lines added, removed or cut, other line endings, bytes that are not UTF-8. Reading the folder must
then give exactly what the official reader would (modelled below on ``read_pred_file`` of
``widerface_evaluate/evaluation.py``), or a :class:`FeatherFaceError` naming the file and the
first offending line as ``path:line:``; never another exception.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from featherface.errors import AnnotationError, FeatherFaceError
from featherface.evaluate.predictions import read_prediction_dir

EVENT = "0--Parade"
SIBLING = "0_Parade_sibling"
SIBLING_TEXT = f"{SIBLING}\n1\n1 2 3 4 0.5 \n"

NON_NUMBERS = ["", "x", "abc", "0x1F", "1,5", "--1", "1e", ".", "+-2", "None", "\x00", "1 2"]
ODD_NUMBERS = ["1_000", "\u0661\u0662", "+.5", "5.", "1E3", "\t7", "-0"]  # float() reads these
NON_FINITE = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "+INF", "1e999", "-1e400"]
EXTREME = ["-1", "-1e308", "1e308", "1.7976931348623157e308", "-99999999999", "1e-320"]
EXTREME += ["9" * 400, "-" + "9" * 310, "0." + "0" * 400 + "1"]
INVALID_UTF8 = [b"\xff", b"\x80", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88"]

POOLS = {"non-finite": NON_FINITE, "extreme": EXTREME + ODD_NUMBERS, "non-number": NON_NUMBERS}
KINDS = [*POOLS, "replace", "swap", "delete", "insert", "duplicate", "cut", "spaces", "fields"]

tokens = st.one_of(
    st.sampled_from(NON_NUMBERS + ODD_NUMBERS + NON_FINITE + EXTREME),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)

names = st.from_regex(r"[0-9]{1,2}_[A-Za-z]{1,8}_[a-z0-9]{1,6}", fullmatch=True)
boxes = st.lists(
    st.tuples(
        st.integers(-50, 2000),
        st.integers(-50, 2000),
        st.integers(0, 500),
        st.integers(0, 500),
        st.floats(0, 1, width=32),
    ),
    max_size=6,
)


@st.composite
def valid_files(draw: st.DrawFn) -> list[str]:
    """The lines of a valid prediction file, as the reference inference writes them."""
    name = draw(names)
    rows = draw(boxes)
    first = draw(st.sampled_from([name, f"{EVENT}/{name}.jpg"]))
    return [first, str(len(rows))] + [f"{x} {y} {w} {h} {s} " for x, y, w, h, s in rows] + [""]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid file after 1 to 3 random line mutations, then maybe byte-level ones."""
    lines = draw(valid_files())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        event(f"mutation: {kind}")
        if kind in POOLS and len(lines) > 2:  # a field of a box line
            index = draw(st.integers(2, len(lines) - 1))
            fields = lines[index].split(" ")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(POOLS[kind]))
            lines[index] = " ".join(fields)
            continue
        index = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "insert":
            fields = draw(st.lists(tokens, max_size=7))
            lines.insert(index, draw(st.one_of(st.just(" ".join(fields)), st.text(max_size=20))))
            continue
        if not lines:
            continue
        fields = lines[index].split(" ")
        if kind == "replace":
            fields[draw(st.integers(0, len(fields) - 1))] = draw(tokens)
        elif kind == "swap":
            i, j = draw(st.integers(0, len(fields) - 1)), draw(st.integers(0, len(fields) - 1))
            fields[i], fields[j] = fields[j], fields[i]
        elif kind == "delete":
            del lines[index]
            continue
        elif kind == "duplicate":
            lines.insert(index, lines[index])
            continue
        elif kind == "cut":
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
            continue
        elif kind == "spaces":
            position = draw(st.integers(0, len(fields)))
            fields.insert(position, "")  # a double, leading or trailing space
        elif kind == "fields":
            if draw(st.booleans()) and len(fields) > 1:
                del fields[draw(st.integers(0, len(fields) - 1))]
            else:
                fields.insert(draw(st.integers(0, len(fields))), draw(tokens))
        lines[index] = " ".join(fields)
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    data = text.encode("utf-8")
    if draw(st.sampled_from(range(6))) == 5:
        event("mutation: invalid UTF-8")
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.sampled_from(INVALID_UTF8)) + data[position:]
    if draw(st.sampled_from(range(6))) == 5:
        event("mutation: truncated bytes")
        data = data[: len(data) - draw(st.integers(0, len(data)))]
    return data


def official_reading(data: bytes) -> tuple[str, np.ndarray] | int:
    """``(key, rows)`` as the official reader reads ``data``, or the 1-based number of the line
    where it fails (it crashes there; we must raise there): bytes that are not UTF-8, a box line
    without five numbers, or one with a NaN or infinite field (accepted officially, refused
    here). A 0-byte file is handled by the caller."""
    raw_lines = re.split(rb"\r\n|\r|\n", data)
    for number, raw in enumerate(raw_lines, start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return number
    with io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None) as stream:
        lines = stream.readlines()  # what open(path, "r").readlines() gives
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.rstrip("\r\n").split(" ")
        if fields[0] == "":
            continue
        try:
            row = [float(field) for field in fields[:5]]
        except ValueError:
            return number
        if len(row) < 5 or not np.isfinite(row).all():
            return number
        rows.append(row)
    key = lines[0].rstrip("\r\n").split("/")[-1].removesuffix(".jpg")
    return key, np.array(rows, dtype=np.float64).reshape(-1, 5)


@settings(max_examples=300, deadline=None)
@given(data=mutated_files())
def test_mutated_files_parse_as_officially_or_fail_at_a_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / EVENT).mkdir()
        path = folder / EVENT / "x.txt"
        path.write_bytes(data)
        (folder / EVENT / "y.txt").write_text(SIBLING_TEXT)
        expected = official_reading(data) if data else None
        try:
            predictions = read_prediction_dir(folder)
        except FeatherFaceError as error:
            message = str(error)
            assert len(message.splitlines()) == 1, message
            if expected is None:
                event("outcome: 0-byte file listed")
                assert message == (
                    f"{folder}: 1 prediction files missing or empty: {EVENT}/x.txt (empty); "
                    "use --missing-as-empty to count them as images without detections"
                )
                return
            assert isinstance(error, AnnotationError), message
            if isinstance(expected, int):
                assert message.startswith(f"{path}:{expected}: "), (message, expected)
                event(f"outcome: error, {message.split(': ', 1)[1].split(',')[0][:25]}")
            else:
                # Only a mutated name line can collide with the sibling file's image.
                assert expected[0] == SIBLING, message
                sibling = folder / EVENT / "y.txt"
                assert message == f"{sibling}:1: image {SIBLING!r} is already named by x.txt"
                event("outcome: error, duplicate image")
            return
        assert expected is not None, "a 0-byte file must be reported"
        assert not isinstance(expected, int), f"line {expected} should have been refused"
        key, rows = expected
        assert list(predictions) == [EVENT]
        assert sorted(predictions[EVENT]) == sorted([key, SIBLING])
        found = predictions[EVENT][key]
        assert found.dtype == np.float64
        np.testing.assert_array_equal(found, rows)
        event(f"outcome: parsed, {'no boxes' if len(rows) == 0 else 'boxes'}")
