"""WIDER FACE prediction files: the official layout, read and written exactly.

The layout is ``<folder>/<event>/<name>.txt``, one file per image::

    <name>                  line 1: the image name (``event/name.jpg`` is accepted too)
    <count>                 line 2: the number of boxes (ignored, as by the official evaluator)
    x y w h score           one line per detection, pixels, in the order the detector wrote them

Reading follows the official evaluator (``widerface_evaluate/evaluation.py``, ``read_pred_file``):
the image key is the last ``/``-separated part of line 1 without ``.jpg``; line 2 is skipped
whatever it says; every later line is split on single spaces, a line whose first field is empty
(a blank line, or one starting with a space) is skipped, and the first five fields are the box
(more fields, such as a trailing space, are ignored). Lines keep their file order: the protocol
depends on it. Where the official code crashes (a missing or 0-byte file, a malformed line, bytes
that are not UTF-8) this module raises a :class:`~featherface.errors.FeatherFaceError` naming the
file (and the line) instead. It also refuses a box field or score that reads as NaN or infinite
(``nan``, ``inf``, ``1e999``), which the official code accepts and which silently turns the whole
set's AP into 0: one such score breaks the min-max normalisation of every score. Negative or
zero coordinates and sizes are kept, as officially (boxes outside the image, degenerate boxes).

Writing follows the reference inference script (``test_widerface.py``): detections are cast to
float32 and each line is ``int(x1) int(y1) int(x2)-int(x1) int(y2)-int(y1) score`` followed by a
space, with ``score`` written as ``str`` of the float32 value. :func:`prediction_array` gives the
same numbers without a file, so evaluating in memory equals writing, reading and evaluating.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featherface.errors import AnnotationError, FeatherFaceError
from featherface.utils.atomic import write_text

Predictions = dict[str, dict[str, np.ndarray]]
"""``predictions[event][name]``: ``float64[N, 5]`` rows ``(x, y, w, h, score)`` in file order."""

PREDICTION_SUFFIX = ".txt"
COLUMNS = ("x", "y", "w", "h", "score")
MISSING_WARNING_FRACTION = 0.5
"""With ``missing_as_empty``, warn when more than this share of the expected images has no file."""
_LISTED_PROBLEMS = 5


class EvaluationWarning(UserWarning):
    """A result that is computed as the official protocol says but is likely not what was meant
    (most images without a prediction file, scores that cannot be ranked). One line of text."""


def empty_predictions() -> np.ndarray:
    """The array of an image without detections, ``float64[0, 5]``."""
    return np.zeros((0, 5), dtype=np.float64)


def image_key(name_line: str) -> str:
    """The image key of a name line: its last ``/``-separated part without a ``.jpg`` suffix.

    The official code strips with ``rstrip('.jpg')``, which removes any trailing ``.``, ``j``,
    ``p`` and ``g`` characters; WIDER image names end with a digit, where both agree.
    """
    return name_line.split("/")[-1].removesuffix(".jpg")


def _refuse_non_finite(rows: list[list[float]], numbers: list[int], path: str | Path) -> None:
    """Raise :class:`AnnotationError` at the first row (file order) with a NaN or infinite field.

    rows: parsed box lines, ``numbers[i]`` the 1-based line number of ``rows[i]``.
    """
    values = np.array(rows, dtype=np.float64).reshape(-1, 5)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = float(values[row, column])
        problem = f"{COLUMNS[column]} is {value}, not a finite number"
        raise AnnotationError(path, problem, numbers[row])


def parse_prediction_text(text: str, path: str | Path) -> tuple[str, np.ndarray]:
    """``(image key, float64[N, 5])`` from the text of a non-empty prediction file.

    ``text`` has universal newlines already translated (as ``open(..., "r")`` does); ``path`` is
    only used in error messages. The first bad box line (file order) raises
    :class:`AnnotationError` with its 1-based line number: fewer than five fields, a field that
    is not a number, or a field that is NaN or infinite (``score is nan, not a finite number``).
    """
    lines = text.split("\n")
    rows: list[list[float]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split(" ")
        if fields[0] == "":
            continue
        try:
            if len(fields) < 5:
                raise ValueError
            rows.append([float(field) for field in fields[:5]])
        except ValueError:
            _refuse_non_finite(rows, numbers, path)  # an earlier line's problem comes first
            raise AnnotationError(path, f"expected 'x y w h score', got {line!r}", number) from None
        numbers.append(number)
    _refuse_non_finite(rows, numbers, path)
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return image_key(lines[0]), boxes


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text with universal newlines translated, as ``open(path, "r")`` reads it; bytes that
    are not UTF-8 raise :class:`AnnotationError` at their line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = _universal_newlines(data[: error.start].decode("utf-8"))
        line = before.count("\n") + 1
        column = len(before) - before.rfind("\n")
        problem = f"not UTF-8 text: byte 0x{data[error.start]:02x} at column {column}"
        raise AnnotationError(path, problem, line) from None
    return _universal_newlines(text)


def _universal_newlines(text: str) -> str:
    """``\\r\\n`` and ``\\r`` as ``\\n``, the translation of ``open(..., newline=None)``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_prediction_file(path: str | Path) -> tuple[str, np.ndarray]:
    """``(image key, float64[N, 5])`` of one prediction file; a 0-byte file is an error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, "prediction file not found") from None
    if not data:
        raise AnnotationError(path, "empty prediction file (0 bytes)")
    return parse_prediction_text(_decode(data, path), path)


def _read_event(folder: Path, problems: list[str]) -> dict[str, np.ndarray]:
    """Read every ``*.txt`` file of one event folder, keyed by image key; note 0-byte files."""
    images: dict[str, np.ndarray] = {}
    sources: dict[str, Path] = {}
    for path in sorted(folder.glob(f"*{PREDICTION_SUFFIX}")):
        if not path.is_file():
            continue
        if path.stat().st_size == 0:
            problems.append(f"{folder.name}/{path.name} (empty)")
            key, boxes = path.stem, empty_predictions()
        else:
            key, boxes = read_prediction_file(path)
        if key in sources:
            raise AnnotationError(path, f"image {key!r} is already named by {sources[key].name}", 1)
        sources[key] = path
        images[key] = boxes
    return images


def _problem_message(folder: Path, problems: list[str]) -> str:
    """One line listing the first missing or empty files and how many more there are."""
    shown = ", ".join(problems[:_LISTED_PROBLEMS])
    more = len(problems) - _LISTED_PROBLEMS
    tail = f" and {more} more" if more > 0 else ""
    return (
        f"{folder}: {len(problems)} prediction files missing or empty: {shown}{tail}; "
        "use --missing-as-empty to count them as images without detections"
    )


def warn_if_mostly_missing(missing: int, total: int, lacking: str, stacklevel: int = 2) -> None:
    """An :class:`EvaluationWarning` when ``missing`` of ``total`` ground-truth images exceed
    :data:`MISSING_WARNING_FRACTION`: likely a ground truth far larger than the predictions.

    lacking: what those images lack, e.g. ``"prediction file in pred"``; stacklevel: as for
    :func:`warnings.warn`, counted from the caller of this function.
    """
    if total and missing > MISSING_WARNING_FRACTION * total:
        message = (
            f"{missing} of {total} ground-truth images have no {lacking} and count as images "
            "without detections (--missing-as-empty), so the AP is not that of the predictions "
            "given: is --gt the ground truth they were made for?"
        )
        warnings.warn(message, EvaluationWarning, stacklevel=stacklevel + 1)


def read_prediction_dir(
    folder: str | Path,
    expected: Mapping[str, Sequence[str]] | None = None,
    missing_as_empty: bool = False,
) -> Predictions:
    """Read ``<folder>/<event>/*.txt`` into ``predictions[event][image key]``.

    expected: ``{event: [image name, ...]}`` (names without ``.jpg``), e.g.
    :meth:`WiderGroundTruth.expected`; every such image must have a prediction file (matched by
    the key of its first line, as in the official code). A missing or 0-byte file raises one
    :class:`FeatherFaceError` listing the offenders, unless ``missing_as_empty``, where each
    counts as an image without detections; when more than half of the expected images have no
    file, an :class:`EvaluationWarning` says how many. Files of images not in ``expected`` are
    kept: the official score normalisation runs over every file read. Files not ending in
    ``.txt`` and entries that are not event folders are ignored (the official reader would fail
    on them); two files of one event naming the same image are an error (officially the last
    listed wins).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FeatherFaceError(f"{folder}: prediction folder not found")
    problems: list[str] = []
    predictions: Predictions = {
        event.name: _read_event(event, problems)
        for event in sorted(folder.iterdir())
        if event.is_dir()
    }
    missing = total = 0
    for event, names in (expected or {}).items():
        images = predictions.setdefault(event, {})
        for name in names:
            total += 1
            if name not in images:
                missing += 1
                problems.append(f"{event}/{name}{PREDICTION_SUFFIX} (missing)")
                images[name] = empty_predictions()
    if problems and not missing_as_empty:
        raise FeatherFaceError(_problem_message(folder, problems))
    warn_if_mostly_missing(missing, total, f"prediction file in {folder}", stacklevel=2)
    return predictions


def _detections(boxes_xyxy: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``(int64[N, 4] x y w h, N score strings)`` as the reference inference writes them."""
    corners = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    values = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(corners) != len(values):
        raise ValueError(f"{len(corners)} boxes but {len(values)} scores")
    if not (np.isfinite(corners).all() and np.isfinite(values).all()):
        raise ValueError("boxes and scores must be finite")
    whole = np.trunc(corners).astype(np.int64)
    boxes = np.concatenate([whole[:, :2], whole[:, 2:] - whole[:, :2]], axis=1)
    return boxes, [str(value) for value in values]


def prediction_array(boxes_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The ``float64[N, 5]`` array that writing then reading these detections gives.

    boxes_xyxy: ``float[N, 4]`` corners ``(x1, y1, x2, y2)`` in pixels; scores: ``float[N]``.
    Row ``i`` is ``(int(x1), int(y1), int(x2) - int(x1), int(y2) - int(y1), float(str(s)))``
    with every value first cast to float32 and ``int`` truncating toward zero.
    """
    boxes, score_text = _detections(boxes_xyxy, scores)
    array = np.empty((len(boxes), 5), dtype=np.float64)
    array[:, :4] = boxes
    array[:, 4] = np.array(score_text, dtype=np.float64)
    return array


def format_prediction_file(name: str, boxes_xyxy: np.ndarray, scores: np.ndarray) -> str:
    """The text of one prediction file (see the module docstring); ``name`` without ``.jpg``."""
    if "\n" in name or "\r" in name:
        raise ValueError(f"image name {name!r} spans lines")
    boxes, score_text = _detections(boxes_xyxy, scores)
    lines = [name, str(len(boxes))]
    lines += [
        f"{x} {y} {w} {h} {score} " for (x, y, w, h), score in zip(boxes, score_text, strict=True)
    ]
    return "\n".join(lines) + "\n"


def prediction_path(folder: str | Path, event: str, name: str) -> Path:
    """``<folder>/<event>/<name>.txt``, where the official layout puts an image's predictions."""
    return Path(folder) / event / f"{name}{PREDICTION_SUFFIX}"


def write_prediction_file(
    path: str | Path, name: str, boxes_xyxy: np.ndarray, scores: np.ndarray
) -> None:
    """Atomically write one prediction file: ``name`` (no ``.jpg``), count, one line per box.

    boxes_xyxy: ``float[N, 4]`` corners in pixels, in the order to keep (the reference writes
    them by descending score after NMS); scores: ``float[N]``.
    """
    write_text(path, format_prediction_file(name, boxes_xyxy, scores))
