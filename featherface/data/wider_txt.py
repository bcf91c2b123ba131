"""The official WIDER FACE split text format (``wider_face_{train,val}_bbx_gt.txt``).

Each image is a block of lines::

    0--Parade/0_Parade_marchingband_1_849.jpg   image path, relative to WIDER_<split>/images
    2                                           number of faces
    449 330 122 149 0 0 0 0 0 0                 x y w h, then the six attributes:
    ...                                         blur expression illumination invalid occlusion pose

An image with no faces has the count ``0`` followed by one line of ten zeros. The official files
end every face line with a space; :func:`format_split_text` writes the same bytes back, so reading
and writing an official file round-trips exactly.

Numbers are plain decimal integers (ASCII digits, optional sign) within int64, the type of the
canonical tables. Lines are counted at ``\n`` (``\r\n`` and a lone ``\r`` are whitespace within a
line), as editors and ``grep -n`` count them, so an error's line number is the one to open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from featherface.data.schema import ATTRIBUTE_COLUMNS

FACE_FIELDS: tuple[str, ...] = ("x", "y", "w", "h", *ATTRIBUTE_COLUMNS)
_ZERO_LINE = (0,) * len(FACE_FIELDS)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64 = 2**63


@dataclass
class ImageRecord:
    """One image block: its relative path and its face rows (``FACE_FIELDS`` order)."""

    path: str
    faces: list[tuple[int, ...]] = field(default_factory=list)
    line: int = 0  # 1-based line of the path in the source file


class SplitTextError(ValueError):
    """A structural problem in a split file, with the 1-based line where it was found."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _is_path_line(text: str) -> bool:
    return text.lower().endswith((".jpg", ".jpeg", ".png"))


def _excerpt(text: str, limit: int = 80) -> str:
    """``repr`` of ``text`` (one line whatever it holds), cut to about ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _integers(fields: list[str], line: int, what: str) -> list[int]:
    """Decimal integers within int64 (no ``1_000``, ``٣`` or ``0x10``, which ``int`` takes)."""
    if not all(_INTEGER.fullmatch(value) for value in fields):
        raise SplitTextError(line, f"{what} is not all integers: {_excerpt(' '.join(fields))}")
    numbers = [int(value) for value in fields]
    if not all(-_INT64 <= number < _INT64 for number in numbers):
        raise SplitTextError(line, f"{what} has a number outside int64")
    return numbers


def _parse_face_line(text: str, line: int) -> tuple[int, ...]:
    fields = text.split()
    if len(fields) != len(FACE_FIELDS):
        raise SplitTextError(
            line,
            f"expected {len(FACE_FIELDS)} integers (x y w h + 6 attributes), got {len(fields)}",
        )
    return tuple(_integers(fields, line, "face line"))


def _parse_count(text: str, line: int) -> int:
    if not _INTEGER.fullmatch(text):
        raise SplitTextError(line, f"expected a face count, got {_excerpt(text)}")
    (count,) = _integers([text], line, "face count")
    if count < 0:
        raise SplitTextError(line, f"negative face count {count}")
    return count


def split_lines(text: str) -> list[str]:
    """``text`` cut at ``\n`` only (a final newline ends the last line, it does not add one)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_faces(lines: list[str], start: int, count: int, count_line: int) -> tuple[list, int]:
    """Parse ``count`` face lines from ``lines[start:]``; return them and the next index."""
    faces: list[tuple[int, ...]] = []
    index = start
    while len(faces) < count:
        if index >= len(lines):
            raise SplitTextError(
                count_line, f"count line says {count} faces but the file ends after {len(faces)}"
            )
        text = lines[index].strip()
        if _is_path_line(text):
            raise SplitTextError(
                count_line, f"count line says {count} faces but {len(faces)} face lines follow"
            )
        faces.append(_parse_face_line(text, index + 1))
        index += 1
    return faces, index


def parse_split_text(text: str) -> list[ImageRecord]:
    """Parse the content of a split file into image records, in file order.

    Raises:
        SplitTextError: on a missing count, a non-integer field, a wrong number of fields, or a
            count line that disagrees with the face lines after it (too few or too many).
    """
    lines = split_lines(text)
    records: list[ImageRecord] = []
    index = 0
    while index < len(lines):
        path = lines[index].strip()
        if not path:
            index += 1
            continue
        if not _is_path_line(path):
            problem = f"expected an image path line, got {_excerpt(path)}"
            if records:
                problem += f" (the count line at {records[-1].line + 1} disagrees with the faces)"
            raise SplitTextError(index + 1, problem)
        if index + 1 >= len(lines):
            raise SplitTextError(index + 1, f"file ends before the face count of {path}")
        count = _parse_count(lines[index + 1].strip(), index + 2)
        faces, next_index = _read_faces(lines, index + 2, count, index + 2)
        following = lines[next_index].strip() if next_index < len(lines) else ""
        if count == 0 and following and not _is_path_line(following):
            if _parse_face_line(following, next_index + 1) != _ZERO_LINE:
                raise SplitTextError(next_index + 1, "count is 0 but a non-zero face line follows")
            next_index += 1
        records.append(ImageRecord(path=path, faces=faces, line=index + 1))
        index = next_index
    return records


def read_text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark is dropped), cut at ``\n``.

    Raises:
        AnnotationError: ``<path>: file not found``, ``<path>: cannot read (<reason>)`` or
            ``<path>:<line>: not UTF-8 text (<reason> at byte <n> of the line)``.
    """
    from featherface.errors import AnnotationError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except OSError as error:
        raise AnnotationError(path, f"cannot read ({error.strerror or error})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return split_lines(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)  # 1-based, in bytes
        problem = f"not UTF-8 text ({error.reason} at byte {column} of the line)"
        raise AnnotationError(path, problem, line) from None


def read_split_text(path: str | Path) -> list[ImageRecord]:
    """Read a split file; errors become :class:`~featherface.errors.AnnotationError`."""
    from featherface.errors import AnnotationError

    path = Path(path)
    lines = read_text_lines(path)
    try:
        return parse_split_text("\n".join(lines))
    except SplitTextError as error:
        raise AnnotationError(path, error.problem, error.line) from None


def format_split_text(records: list[ImageRecord]) -> str:
    """Write records in the official layout (trailing space on face lines, zero line if empty)."""
    out: list[str] = []
    for record in records:
        out.append(record.path)
        out.append(str(len(record.faces)))
        rows = record.faces if record.faces else [_ZERO_LINE]
        out.extend("".join(f"{value} " for value in row) for row in rows)
    return "\n".join(out) + "\n" if out else ""
