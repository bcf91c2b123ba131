"""The WIDER FACE folder layout, read into (and written from) the canonical tables.

Expected layout under a root folder (the one torchvision's ``WIDERFace`` downloader creates as
``<dest>/widerface``; :func:`resolve_root` accepts either)::

    WIDER_train/images/<event>/<name>.jpg
    WIDER_val/images/<event>/<name>.jpg
    wider_face_split/wider_face_{train,val}_bbx_gt.txt      required
    retinaface_gt/{train,val}/label.txt                       optional: 5-point landmarks
    eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat   optional: val keep lists

The real data set and the synthetic one are read by the same functions.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from featherface.data import wider_mat
from featherface.data.retinaface_labels import LabelRecord, format_label_file, read_label_file
from featherface.data.schema import (
    ATTRIBUTE_COLUMNS,
    IMAGE_COLUMNS,
    KEEP_COLUMNS,
    LANDMARK_COLUMNS,
    SPLITS,
    conform_faces,
    conform_images,
)
from featherface.data.wider_txt import FACE_FIELDS, ImageRecord, format_split_text, read_split_text
from featherface.errors import AnnotationError

# Columns that trace each row to its source file and 1-based line; kept during preparation for
# error messages, dropped from the saved tables.
SOURCE_COLUMNS: tuple[str, str] = ("source_file", "source_line")


@dataclass(frozen=True)
class WiderLayout:
    """Paths of a WIDER FACE folder."""

    root: Path

    def images_dir(self, split: str) -> Path:
        return self.root / f"WIDER_{split}" / "images"

    def split_file(self, split: str) -> Path:
        return self.root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"

    def label_file(self, split: str) -> Path:
        return self.root / "retinaface_gt" / split / "label.txt"

    @property
    def ground_truth_dir(self) -> Path:
        return self.root / "eval_tools" / "ground_truth"


def resolve_root(path: str | Path) -> Path:
    """Return the folder holding ``wider_face_split`` (``path`` itself or ``path/widerface``)."""
    path = Path(path)
    for candidate in (path, path / "widerface"):
        if (candidate / "wider_face_split").is_dir():
            return candidate
    raise AnnotationError(path, "no wider_face_split/ folder here or in widerface/ below it")


def image_files(root: Path, images: pd.DataFrame) -> list[Path]:
    """The file of each row of an ``images`` table whose paths are relative to ``root``."""
    layout = WiderLayout(root)
    pairs = zip(images["split"], images["path"], strict=True)
    return [layout.images_dir(split) / path for split, path in pairs]


def image_error(path: Path, error: BaseException) -> AnnotationError:
    """``<path>: cannot decode image (<reason>)`` for an error of PIL on ``path``, one line."""
    if isinstance(error, UnidentifiedImageError):  # its message repeats the path
        reason = "not an image in a format PIL reads"
    else:
        text = " ".join(str(error).split()) or type(error).__name__
        reason = text.replace(str(path), "<file>")[:200]
    return AnnotationError(path, f"cannot decode image ({reason})")


def _image_size(path: Path) -> tuple[int, int] | AnnotationError | None:
    """The size in the image's header; ``None`` if the file is missing, else the error."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        return None
    except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, bomb errors...
        return image_error(path, error)


def _image_rows(layout: WiderLayout, split: str, records: list[ImageRecord], first_id: int) -> list:
    paths = [layout.images_dir(split) / record.path for record in records]
    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(pool.map(_image_size, paths))
    rows = []
    for offset, (record, path, size) in enumerate(zip(records, paths, sizes, strict=True)):
        if size is None:
            problem = f"image not found: {path}"
            raise AnnotationError(layout.split_file(split), problem, record.line)
        if isinstance(size, AnnotationError):
            raise size
        rows.append(
            {
                "image_id": first_id + offset,
                "path": record.path,
                "event": record.path.split("/")[0],
                "width": size[0],
                "height": size[1],
                "split": split,
                "source_file": str(layout.split_file(split)),
                "source_line": record.line,
            }
        )
    return rows


def _face_rows(split_file: Path, records: list[ImageRecord], first_id: int) -> list:
    rows = []
    for offset, record in enumerate(records):
        count_line = record.line + 1
        for index, values in enumerate(record.faces):
            row = dict(zip(FACE_FIELDS, values, strict=True))
            row.update(image_id=first_id + offset, face_index=index)
            row.update(source_file=str(split_file), source_line=count_line + 1 + index)
            rows.append(row)
    return rows


def _attach_landmarks(faces: pd.DataFrame, images: pd.DataFrame, labels: list[LabelRecord]) -> None:
    """Fill landmark columns in place, matching label boxes to faces of the same image by box."""
    by_path = {record.path: record for record in labels}
    id_to_path = dict(zip(images["image_id"], images["path"], strict=True))
    values = np.full((len(faces), len(LANDMARK_COLUMNS)), np.nan)
    for image_id, group in faces.groupby("image_id", sort=False):
        record = by_path.get(id_to_path[image_id])
        if record is None:
            continue
        unused = list(range(len(record.boxes)))
        for position, face in zip(group.index, group.itertuples(index=False), strict=True):
            key = (float(face.x), float(face.y), float(face.w), float(face.h))
            match = next((i for i in unused if record.boxes[i] == key), None)
            if match is not None:
                unused.remove(match)
                values[faces.index.get_loc(position)] = record.landmarks[match]
    faces.loc[:, list(LANDMARK_COLUMNS)] = values


def _attach_keep_lists(faces: pd.DataFrame, images: pd.DataFrame, folder: Path) -> None:
    """Fill keep_* columns of val faces in place from the official ``.mat`` files."""
    ground_truth = {image.path: image for image in wider_mat.read_ground_truth(folder)}
    val_images = images[images["split"] == "val"]
    for image_id, path in zip(val_images["image_id"], val_images["path"], strict=True):
        rows = faces.index[faces["image_id"] == image_id]
        entry = ground_truth.get(path)
        if entry is None:
            raise AnnotationError(folder / wider_mat.GROUND_TRUTH_FILE, f"no entry for {path}")
        boxes = faces.loc[rows, ["x", "y", "w", "h"]].to_numpy()
        if boxes.shape != entry.boxes.shape or not (boxes == entry.boxes).all():
            raise AnnotationError(
                folder / wider_mat.GROUND_TRUTH_FILE, f"boxes of {path} differ from the split file"
            )
        for setting, column in zip(entry.keep, KEEP_COLUMNS, strict=True):
            keep = np.zeros(len(rows), dtype=bool)
            keep[entry.keep[setting]] = True
            faces.loc[rows, column] = keep


def read_split(layout: WiderLayout, split: str, first_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read one split into (images, faces) tables that still carry :data:`SOURCE_COLUMNS`."""
    split_file = layout.split_file(split)
    records = read_split_text(split_file)
    images = pd.DataFrame(
        _image_rows(layout, split, records, first_id), columns=[*IMAGE_COLUMNS, *SOURCE_COLUMNS]
    )
    columns = ["image_id", "face_index", *FACE_FIELDS, *SOURCE_COLUMNS]
    faces = pd.DataFrame(_face_rows(split_file, records, first_id), columns=columns)
    for column in LANDMARK_COLUMNS:
        faces[column] = math.nan
    for column in KEEP_COLUMNS:
        faces[column] = pd.array([pd.NA] * len(faces), dtype="boolean")
    if layout.label_file(split).is_file() and len(faces):
        _attach_landmarks(faces, images, read_label_file(layout.label_file(split)))
    if split == "val" and layout.ground_truth_dir.is_dir() and len(images):
        _attach_keep_lists(faces, images, layout.ground_truth_dir)
    return images, faces


def read_annotations(
    root: str | Path, splits: tuple[str, ...] = SPLITS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the given splits of a WIDER-layout folder; ``image_id`` runs over all splits."""
    layout = WiderLayout(resolve_root(root))
    images_parts, faces_parts = [], []
    for split in splits:
        first_id = sum(len(part) for part in images_parts)
        images, faces = read_split(layout, split, first_id)
        images_parts.append(images)
        faces_parts.append(faces)
    return pd.concat(images_parts, ignore_index=True), pd.concat(faces_parts, ignore_index=True)


def _faces_by_image(images: pd.DataFrame, faces: pd.DataFrame) -> list[pd.DataFrame]:
    """The faces of each image of ``images`` (in its order), sorted by ``face_index``."""
    grouped = {key: group.sort_values("face_index") for key, group in faces.groupby("image_id")}
    empty = faces.iloc[:0]
    return [grouped.get(image_id, empty) for image_id in images["image_id"]]


def _mat_image(path: str, group: pd.DataFrame) -> wider_mat.MatImage:
    event, name = path.split("/", 1)
    keep = {
        column.removeprefix("keep_"): np.flatnonzero(group[column].fillna(False).to_numpy(bool))
        for column in KEEP_COLUMNS
    }
    attributes = {column: group[column].to_numpy(np.int64) for column in ATTRIBUTE_COLUMNS}
    boxes = group[["x", "y", "w", "h"]].to_numpy(np.int64)
    return wider_mat.MatImage(event, name.rsplit(".", 1)[0], boxes, attributes, keep)


def write_annotations(root: str | Path, images: pd.DataFrame, faces: pd.DataFrame) -> None:
    """Write split files, ``label.txt`` files and (for val) the ``.mat`` ground truth."""
    layout = WiderLayout(Path(root))
    images, faces = conform_images(images), conform_faces(faces)
    for split in images["split"].unique():
        split_images = images[images["split"] == split]
        groups = _faces_by_image(
            split_images, faces[faces["image_id"].isin(split_images["image_id"])]
        )
        paths = list(split_images["path"])
        records = [
            ImageRecord(
                path, [tuple(int(v) for v in row) for row in group[list(FACE_FIELDS)].to_numpy()]
            )
            for path, group in zip(paths, groups, strict=True)
        ]
        labels = [
            LabelRecord(
                path,
                [tuple(float(v) for v in row) for row in group[["x", "y", "w", "h"]].to_numpy()],
                [tuple(row) for row in group[list(LANDMARK_COLUMNS)].to_numpy(float)],
            )
            for path, group in zip(paths, groups, strict=True)
        ]
        for target, content in (
            (layout.split_file(split), format_split_text(records)),
            (layout.label_file(split), format_label_file(labels)),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        if split == "val":
            mats = [_mat_image(path, group) for path, group in zip(paths, groups, strict=True)]
            wider_mat.write_ground_truth(layout.ground_truth_dir, mats)
