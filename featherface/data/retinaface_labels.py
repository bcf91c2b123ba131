"""RetinaFace landmark labels (``retinaface_gt/{train,val}/label.txt``).

The format used by the RetinaFace training code::

    # 0--Parade/0_Parade_marchingband_1_849.jpg          (val files add: width height)
    449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 ...  0.82

A face line holds the box ``x y w h`` and, in the training file, the five landmarks as
``lx ly flag`` triples followed by a confidence (20 numbers). Missing landmarks are written as
``-1``. The validation file carries only the box (4 numbers).

Numbers are plain decimals (``12``, ``-1.0``, ``0.82``, ``1e-3``) with a finite value; ``nan``,
``inf``, ``1e999`` or ``1_000`` make the line an error. Lines are counted at ``\n``, as in
:mod:`featherface.data.wider_txt`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from featherface.data.wider_txt import read_text_lines
from featherface.errors import AnnotationError

NUM_LANDMARKS = 5
_FULL_FIELDS = 4 + 3 * NUM_LANDMARKS + 1
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass
class LabelRecord:
    """One ``# path`` block: boxes and landmarks (10 floats, NaN where missing) per face."""

    path: str
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    landmarks: list[tuple[float, ...]] = field(default_factory=list)
    line: int = 0


def _landmarks_from_fields(values: list[float]) -> tuple[float, ...]:
    """Ten coordinates from the 15 ``lx ly flag`` values; a point at (-1, -1) is missing."""
    points: list[float] = []
    for index in range(NUM_LANDMARKS):
        lx, ly = values[3 * index], values[3 * index + 1]
        missing = lx < 0 and ly < 0
        points.extend((math.nan, math.nan) if missing else (lx, ly))
    return tuple(points)


def _parse_face(text: str, line: int, path: Path) -> tuple[tuple, tuple]:
    fields = text.split()
    if len(fields) not in (4, _FULL_FIELDS):
        raise AnnotationError(
            path, f"expected 4 or {_FULL_FIELDS} numbers on a face line, got {len(fields)}", line
        )
    if not all(_DECIMAL.fullmatch(value) for value in fields):
        excerpt = repr(text) if len(text) <= 80 else repr(text[:80]) + "..."
        raise AnnotationError(path, f"face line is not all numbers: {excerpt}", line)
    values = [float(value) for value in fields]
    if not all(math.isfinite(value) for value in values):
        raise AnnotationError(path, "face line has a number out of range", line)
    landmarks = (
        _landmarks_from_fields(values[4:19]) if len(values) == _FULL_FIELDS else (math.nan,) * 10
    )
    return tuple(values[:4]), landmarks


def read_label_file(path: str | Path) -> list[LabelRecord]:
    """Read a ``label.txt`` file into records, in file order.

    Raises:
        AnnotationError: naming the file and line of a face line before any ``#`` line, a line
            with the wrong number of fields, a field that is not a finite decimal number, or
            bytes that are not UTF-8; naming the file when it is missing or unreadable.
    """
    path = Path(path)
    lines = read_text_lines(path)
    records: list[LabelRecord] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("#"):
            parts = text[1:].split()
            if not parts:
                raise AnnotationError(path, "'#' line without an image path", number)
            records.append(LabelRecord(path=parts[0], line=number))
            continue
        if not records:
            raise AnnotationError(path, "face line before the first '# path' line", number)
        box, landmarks = _parse_face(text, number, path)
        records[-1].boxes.append(box)
        records[-1].landmarks.append(landmarks)
    return records


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def format_label_file(records: list[LabelRecord]) -> str:
    """Write records in the training-file layout (box, five ``lx ly 0.0`` triples, confidence).

    Faces without landmarks are written with ``-1`` for every landmark value and confidence ``-1``,
    as in the RetinaFace files; faces with landmarks get confidence ``1.0``.
    """
    out: list[str] = []
    for record in records:
        out.append(f"# {record.path}")
        for box, landmarks in zip(record.boxes, record.landmarks, strict=True):
            fields = [_format_number(value) for value in box]
            known = not any(math.isnan(value) for value in landmarks)
            for index in range(NUM_LANDMARKS):
                if known:
                    fields += [
                        f"{landmarks[2 * index]:.3f}",
                        f"{landmarks[2 * index + 1]:.3f}",
                        "0.0",
                    ]
                else:
                    fields += ["-1.0", "-1.0", "-1.0"]
            fields.append("1.0" if known else "-1.0")
            out.append(" ".join(fields))
    return "\n".join(out) + "\n" if out else ""
