"""The official WIDER FACE validation ground truth (``eval_tools/ground_truth/*.mat``).

``wider_face_val.mat`` holds MATLAB cell arrays indexed by event ``e`` and image ``i``:
``event_list{e}`` (``'0--Parade'``), ``file_list{e}{i}`` (image name without ``.jpg``),
``face_bbx_list{e}{i}`` (``[n, 4]`` boxes ``x y w h``) and one ``<attribute>_label_list{e}{i}``
(``[n, 1]``) per WIDER attribute. ``wider_{easy,medium,hard}_val.mat`` add ``gt_list{e}{i}``: the
1-based indices of the boxes that the setting keeps (an empty ``[0, 0]`` array when none).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from featherface.data.schema import ATTRIBUTE_COLUMNS, DIFFICULTIES
from featherface.errors import AnnotationError

GROUND_TRUTH_FILE = "wider_face_val.mat"
KEEP_FILES: dict[str, str] = {name: f"wider_{name}_val.mat" for name in DIFFICULTIES}
# MAT 5 files start with 116 bytes of descriptive text; scipy puts the current time there. A fixed
# text keeps files written from the same data byte-identical.
_HEADER_BYTES = 116
_FIXED_HEADER = b"MATLAB 5.0 MAT-file, written by featherface".ljust(_HEADER_BYTES)


@dataclass
class MatImage:
    """Ground truth of one image: boxes ``int64[n, 4]``, attributes and 0-based keep indices."""

    event: str
    name: str
    boxes: np.ndarray
    attributes: dict[str, np.ndarray]
    keep: dict[str, np.ndarray]

    @property
    def path(self) -> str:
        """Relative image path as in the split text files, ``<event>/<name>.jpg``."""
        return f"{self.event}/{self.name}.jpg"


# MAT 5 data types (element tags) and array classes, as in MATLAB's "MAT-File Format" document.
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MI_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_TEXT = {16: "utf-8", 17: "utf-16", 18: "utf-32"}
_MX_CELL, _MX_CHAR = 1, 4
_MX_NUMERIC = set(range(6, 16))  # double, single, int8 ... uint64
_MAX_DEPTH = 8
_MAX_INFLATED = 256 * 1024 * 1024


class _MatFormatError(ValueError):
    """A MAT 5 structure that scipy's reader must not be given."""


class _Walker:
    """Checks the structure of a MAT 5 file the way scipy's reader will walk it, without
    building arrays: element types, byte counts, dimensions, the classes this module reads (cell,
    char, numeric). scipy's compiled reader trusts these fields (an unknown element type in a
    numeric array crashes the process; a cell array claiming 2**31 cells allocates them first),
    so a file is handed to it only when the walk succeeds."""

    def __init__(self, data: bytes, order: str) -> None:
        self.data, self.order = data, order

    def _u32(self, pos: int, count: int = 2) -> tuple[int, ...]:
        return struct.unpack_from(f"{self.order}{count}I", self.data, pos)

    def _tag(self, pos: int, end: int, full: bool = False) -> tuple[int, int, int, int]:
        """(type, byte count, data position, position after the padded element)."""
        if pos + 8 > end:
            raise _MatFormatError(f"element tag at byte {pos} runs past its container")
        word, count = self._u32(pos)
        if word >> 16:  # small data element: up to 4 bytes packed into the tag
            if full or word >> 16 > 4:
                raise _MatFormatError(f"bad small data element at byte {pos}")
            return word & 0xFFFF, word >> 16, pos + 4, pos + 8
        padded = pos + 8 + count + (-count % 8)
        if pos + 8 + count > end:
            raise _MatFormatError(f"element at byte {pos} claims {count} bytes past its end")
        return word, count, pos + 8, min(padded, end)

    def _data(self, pos: int, end: int, types: set[int] | dict) -> tuple[int, int, int, int]:
        mdtype, count, start, after = self._tag(pos, end)
        if mdtype not in types:
            raise _MatFormatError(f"element type {mdtype} at byte {pos} is not allowed here")
        if count % _MI_ITEMSIZE.get(mdtype, 1):
            raise _MatFormatError(f"element at byte {pos}: {count} bytes for type {mdtype}")
        return mdtype, count, start, after

    def matrix(self, pos: int, end: int, depth: int = 0) -> None:
        """Check the content of one miMATRIX element, ``data[pos:end]``."""
        if depth > _MAX_DEPTH:
            raise _MatFormatError("cell arrays nested too deep")
        mdtype, count, start, pos = self._tag(pos, end, full=True)
        if mdtype != _MI_UINT32 or count != 8:
            raise _MatFormatError(f"array flags at byte {start - 8} are not 8 bytes of uint32")
        flags = self._u32(start, 1)[0]
        array_class, complex_ = flags & 0xFF, bool(flags & 0x800)
        _, count, start, pos = self._data(pos, end, {_MI_INT32})
        dims = struct.unpack_from(f"{self.order}{count // 4}i", self.data, start)
        if len(dims) < 2 or min(dims) < 0:
            raise _MatFormatError(f"dimensions {list(dims)} at byte {start}")
        elements = math.prod(dims)
        _, _, _, pos = self._data(pos, end, {_MI_INT8})  # the name
        if array_class == _MX_CELL:
            if elements * 8 > end - pos:
                raise _MatFormatError(f"{elements} cells do not fit in {end - pos} bytes")
            for _ in range(elements):
                mdtype, count, start, pos = self._tag(pos, end, full=True)
                if count and mdtype != _MI_MATRIX:
                    raise _MatFormatError(f"cell at byte {start - 8} is of type {mdtype}")
                if count:
                    self.matrix(start, start + count, depth + 1)
        elif array_class == _MX_CHAR or array_class in _MX_NUMERIC:
            types = _MI_ITEMSIZE if array_class == _MX_CHAR else set(_MI_ITEMSIZE) - set(_MI_TEXT)
            for _ in range(2 if complex_ and array_class != _MX_CHAR else 1):
                mdtype, count, start, pos = self._data(pos, end, types)
                if mdtype in _MI_TEXT:
                    try:
                        text = self.data[start : start + count].decode(_MI_TEXT[mdtype])
                    except UnicodeDecodeError:
                        raise _MatFormatError(f"undecodable text at byte {start}") from None
                    if len(text) != elements:
                        raise _MatFormatError(f"{len(text)} characters for {list(dims)}")
                elif count // _MI_ITEMSIZE[mdtype] != elements:
                    raise _MatFormatError(f"{count} bytes of data for dimensions {list(dims)}")
        else:
            raise _MatFormatError(f"array class {array_class} (only cell, char and numeric)")
        if pos != end:  # scipy reads on from where the content ends, not from ``end``
            raise _MatFormatError(f"{end - pos} unexplained bytes at byte {pos}")

    def file(self) -> None:
        """Check the 128-byte header and every top-level variable."""
        head = self.data[:128]
        if len(head) < 128 or 0 in head[:4]:
            raise _MatFormatError("not a MAT 5 file (header)")
        version = head[124:126][::-1] if head[126:128] == b"IM" else head[124:126]
        if head[126:128] not in (b"IM", b"MI") or version[0] != 1:
            raise _MatFormatError("not a MAT 5 file (version and byte order)")
        pos = 128
        while pos < len(self.data):
            mdtype, count, start, _ = self._tag(pos, len(self.data), full=True)
            pos = start + count  # top-level elements are not padded (compressed ones are not)
            if count == 0 or mdtype not in (_MI_MATRIX, _MI_COMPRESSED):
                raise _MatFormatError(f"top-level element of type {mdtype}, {count} bytes")
            if mdtype == _MI_MATRIX:
                self.matrix(start, start + count)
                continue
            inflater = zlib.decompressobj()
            try:
                inner = inflater.decompress(self.data[start : start + count], _MAX_INFLATED)
            except zlib.error as error:
                raise _MatFormatError(f"compressed variable at byte {start}: {error}") from None
            if inflater.unconsumed_tail:
                raise _MatFormatError(f"compressed variable at byte {start} inflates too much")
            walker = _Walker(inner, self.order)
            mdtype, count, start, _ = walker._tag(0, len(inner), full=True)
            if mdtype != _MI_MATRIX:
                raise _MatFormatError(f"compressed variable holds an element of type {mdtype}")
            walker.matrix(start, start + count)


def _load(path: Path, keys: tuple[str, ...]) -> dict:
    """Read a MAT 5 file with scipy after checking its structure; errors name the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except OSError as error:
        raise AnnotationError(path, f"cannot read ({error.strerror or error})") from None
    try:
        header = data[126:128]
        _Walker(data, "<" if header == b"IM" else ">").file()
        with warnings.catch_warnings():  # scipy warns about duplicate and unreadable variables
            warnings.simplefilter("ignore")
            content = scipy.io.loadmat(io.BytesIO(data))
    except Exception as error:  # scipy raises many types on a damaged file
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise AnnotationError(path, f"not a readable MATLAB file ({reason})") from None
    missing = [key for key in keys if key not in content]
    if missing:
        raise AnnotationError(path, f"missing variables {missing}")
    return content


def _cells(content: dict, key: str, path: Path, count: int | None = None) -> np.ndarray:
    """Variable ``key`` as a flat array of cells (``count`` of them when given)."""
    value = content[key]
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise AnnotationError(path, f"{key} is not a cell array")
    cells = value.ravel()
    if count is not None and len(cells) != count:
        raise AnnotationError(path, f"{key} has {len(cells)} entries, expected {count}")
    return cells


def _inner_cells(value: object, path: Path, what: str, count: int | None = None) -> np.ndarray:
    """The per-image cells of one event: a cell array (of ``count`` entries when given)."""
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise AnnotationError(path, f"{what} is not a cell array")
    cells = value.ravel()
    if count is not None and len(cells) != count:
        raise AnnotationError(path, f"{what} has {len(cells)} images, expected {count}")
    return cells


def _cell_string(cell: np.ndarray, path: Path, what: str) -> str:
    value = np.asarray(cell).ravel()
    if value.dtype.kind != "U" or value.size != 1 or not value[0]:
        raise AnnotationError(path, f"{what} is not a non-empty string")
    return str(value[0])


def _integers(cell: object, path: Path, what: str) -> np.ndarray:
    """A numeric cell as ``int64``: finite whole numbers within int64 only."""
    value = np.asarray(cell)
    if value.dtype.kind not in "biuf":
        raise AnnotationError(path, f"{what} is not numeric")
    if value.dtype.kind == "f" and value.size:
        limit = 2.0**63
        whole = np.isfinite(value).all() and (value == np.round(value)).all()
        if not whole or (np.abs(value) >= limit).any():
            raise AnnotationError(path, f"{what} holds values that are not whole numbers")
    if value.dtype == np.uint64 and value.size and value.max() >= 2**63:
        raise AnnotationError(path, f"{what} holds values beyond int64")
    return value.astype(np.int64)


def _keep_indices(cell: np.ndarray, count: int, path: Path, where: str) -> np.ndarray:
    indices = _integers(cell, path, f"gt_list of {where}").ravel() - 1
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        raise AnnotationError(path, f"keep index out of range 1..{count} for {where}")
    return indices


def read_ground_truth(folder: str | Path) -> list[MatImage]:
    """Read ``wider_face_val.mat`` and the three keep lists from ``folder``, in .mat order.

    Raises:
        AnnotationError: naming the file, for a missing, unreadable or damaged file, a missing
            variable, or contents that do not have the layout of the module docstring.
    """
    folder = Path(folder)
    attribute_keys = tuple(f"{name}_label_list" for name in ATTRIBUTE_COLUMNS)
    main_path = folder / GROUND_TRUTH_FILE
    main = _load(main_path, ("event_list", "file_list", "face_bbx_list", *attribute_keys))
    events = _cells(main, "event_list", main_path)
    per_event = {
        key: _cells(main, key, main_path, len(events))
        for key in ("file_list", "face_bbx_list", *attribute_keys)
    }
    keep_paths = {name: folder / file for name, file in KEEP_FILES.items()}
    keeps = {
        name: _cells(_load(path, ("gt_list",)), "gt_list", path, len(events))
        for name, path in keep_paths.items()
    }
    images: list[MatImage] = []
    for e, event_cell in enumerate(events):
        event = _cell_string(event_cell, main_path, f"event_list entry {e + 1}")

        where = f"entry {e + 1} ({event})"
        files = _inner_cells(per_event["file_list"][e], main_path, f"file_list {where}")
        count = len(files)
        boxes_of = _inner_cells(
            per_event["face_bbx_list"][e], main_path, f"face_bbx_list {where}", count
        )
        attributes_of = {
            name: _inner_cells(per_event[key][e], main_path, f"{key} {where}", count)
            for name, key in zip(ATTRIBUTE_COLUMNS, attribute_keys, strict=True)
        }
        keeps_of = {
            setting: _inner_cells(cells[e], keep_paths[setting], f"gt_list {where}", count)
            for setting, cells in keeps.items()
        }
        for i, file_cell in enumerate(files):
            name = _cell_string(file_cell, main_path, f"file_list entry {e + 1}.{i + 1}")
            where = f"{event}/{name}"
            boxes = _integers(boxes_of[i], main_path, f"face_bbx_list of {where}")
            if boxes.size % 4:
                raise AnnotationError(main_path, f"face_bbx_list of {where}: {boxes.size} numbers")
            boxes = boxes.reshape(-1, 4)
            attributes = {}
            for attribute, cells in attributes_of.items():
                values = _integers(cells[i], main_path, f"{attribute} of {where}").ravel()
                if len(values) != len(boxes):
                    problem = f"{attribute} of {where}: {len(values)} values for {len(boxes)} boxes"
                    raise AnnotationError(main_path, problem)
                attributes[attribute] = values
            keep = {
                setting: _keep_indices(cells[i], len(boxes), keep_paths[setting], where)
                for setting, cells in keeps_of.items()
            }
            images.append(MatImage(event, name, boxes, attributes, keep))
    return images


def _cell_column(items: list[np.ndarray]) -> np.ndarray:
    column = np.empty((len(items), 1), dtype=object)
    for index, item in enumerate(items):
        column[index, 0] = item
    return column


def _save_mat(path: Path, content: dict[str, np.ndarray]) -> None:
    """``scipy.io.savemat`` with a fixed header text instead of the creation time."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content)
    data = buffer.getvalue()
    path.write_bytes(_FIXED_HEADER + data[_HEADER_BYTES:])


def write_ground_truth(folder: str | Path, images: list[MatImage]) -> None:
    """Write the four ``.mat`` files in the official structure (events in first-seen order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    events = list(dict.fromkeys(image.event for image in images))
    grouped = {event: [image for image in images if image.event == event] for event in events}

    def per_event(make) -> np.ndarray:
        return _cell_column([_cell_column([make(image) for image in grouped[e]]) for e in events])

    main = {
        "event_list": _cell_column([np.array([event]) for event in events]),
        "file_list": per_event(lambda image: np.array([image.name])),
        "face_bbx_list": per_event(lambda image: image.boxes.astype(np.int32).reshape(-1, 4)),
    }
    for name in ATTRIBUTE_COLUMNS:
        main[f"{name}_label_list"] = per_event(
            lambda image, name=name: image.attributes[name].astype(np.uint8).reshape(-1, 1)
        )
    _save_mat(folder / GROUND_TRUTH_FILE, main)
    for setting, file in KEEP_FILES.items():

        def keep_cell(image: MatImage, setting: str = setting) -> np.ndarray:
            indices = image.keep[setting] + 1
            return indices.astype(np.uint16).reshape(-1, 1) if indices.size else np.zeros((0, 0))

        _save_mat(folder / file, {**main, "gt_list": per_event(keep_cell)})
