"""The official WIDER FACE validation ground truth (``eval_tools/ground_truth/*.mat``).

``wider_face_val.mat`` holds MATLAB cell arrays indexed by event ``e`` and image ``i``:
``event_list{e}`` (``'0--Parade'``), ``file_list{e}{i}`` (image name without ``.jpg``),
``face_bbx_list{e}{i}`` (``[n, 4]`` boxes ``x y w h``) and one ``<attribute>_label_list{e}{i}``
(``[n, 1]``) per WIDER attribute. ``wider_{easy,medium,hard}_val.mat`` add ``gt_list{e}{i}``: the
1-based indices of the boxes that the setting keeps (an empty ``[0, 0]`` array when none).
"""

from __future__ import annotations

import io
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


def _load(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise AnnotationError(path, "file not found")
    try:
        content = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as error:
        raise AnnotationError(path, f"not a readable MATLAB file ({error})") from None
    missing = [key for key in keys if key not in content]
    if missing:
        raise AnnotationError(path, f"missing variables {missing}")
    return content


def _cell_string(cell: np.ndarray) -> str:
    return str(np.asarray(cell).ravel()[0])


def _keep_indices(cell: np.ndarray, count: int, path: Path, where: str) -> np.ndarray:
    indices = np.asarray(cell).astype(np.int64).ravel() - 1
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        raise AnnotationError(path, f"keep index out of range 1..{count} for {where}")
    return indices


def read_ground_truth(folder: str | Path) -> list[MatImage]:
    """Read ``wider_face_val.mat`` and the three keep lists from ``folder``, in .mat order."""
    folder = Path(folder)
    attribute_keys = tuple(f"{name}_label_list" for name in ATTRIBUTE_COLUMNS)
    main_path = folder / GROUND_TRUTH_FILE
    main = _load(main_path, ("event_list", "file_list", "face_bbx_list", *attribute_keys))
    keep_paths = {name: folder / file for name, file in KEEP_FILES.items()}
    keeps = {name: _load(path, ("gt_list",))["gt_list"] for name, path in keep_paths.items()}
    images: list[MatImage] = []
    for e, event_cell in enumerate(main["event_list"].ravel()):
        event = _cell_string(event_cell)
        files = main["file_list"].ravel()[e].ravel()
        for i, file_cell in enumerate(files):
            boxes = np.asarray(main["face_bbx_list"].ravel()[e].ravel()[i]).astype(np.int64)
            boxes = boxes.reshape(-1, 4)
            attributes = {
                name: np.asarray(main[key].ravel()[e].ravel()[i]).astype(np.int64).ravel()
                for name, key in zip(ATTRIBUTE_COLUMNS, attribute_keys, strict=True)
            }
            name = _cell_string(file_cell)
            keep = {
                setting: _keep_indices(
                    cells.ravel()[e].ravel()[i], len(boxes), keep_paths[setting], f"{event}/{name}"
                )
                for setting, cells in keeps.items()
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
