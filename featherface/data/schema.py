"""The canonical tables every reader produces and every consumer reads.

Two pandas tables describe a WIDER-format data set:

``images`` (one row per image)
    ``image_id`` int64, unique over all splits; ``path`` str, relative to the split's image
    folder (``WIDER_<split>/images``), e.g. ``"0--Parade/0_Parade_Parade_0_873.jpg"``;
    ``event`` str (the folder, ``"0--Parade"``); ``width``, ``height`` int64 pixels;
    ``split`` str, one of :data:`SPLITS`.

``faces`` (one row per annotated box)
    ``image_id`` int64; ``face_index`` int64, the 0-based position of the box in the image's
    official list (keep lists and the text format refer to it); ``x``, ``y``, ``w``, ``h`` int64,
    box corner and size in pixels (WIDER boxes are integers); ten landmark columns
    :data:`LANDMARK_COLUMNS` float64 (left eye, right eye, nose tip, left and right mouth corner),
    NaN where unknown; the WIDER attributes :data:`ATTRIBUTE_COLUMNS` int64; ``keep_easy``,
    ``keep_medium``, ``keep_hard`` nullable booleans, NA where the split has no keep lists.
"""

from __future__ import annotations

import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val")

IMAGE_COLUMNS: dict[str, str] = {
    "image_id": "int64",
    "path": "object",
    "event": "object",
    "width": "int64",
    "height": "int64",
    "split": "object",
}

LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LANDMARK_COLUMNS: tuple[str, ...] = tuple(
    f"lm{index}_{axis}" for index in range(len(LANDMARK_NAMES)) for axis in ("x", "y")
)

# Attribute -> inclusive (low, high) range of the codes used by WIDER FACE
# (wider_face_split/readme.txt): blur clear/normal/heavy, expression typical/exaggerate,
# illumination normal/extreme, invalid false/true, occlusion none/partial/heavy,
# pose typical/atypical.
ATTRIBUTE_RANGES: dict[str, tuple[int, int]] = {
    "blur": (0, 2),
    "expression": (0, 1),
    "illumination": (0, 1),
    "invalid": (0, 1),
    "occlusion": (0, 2),
    "pose": (0, 1),
}
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(ATTRIBUTE_RANGES)
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
KEEP_COLUMNS: tuple[str, ...] = tuple(f"keep_{name}" for name in DIFFICULTIES)

FACE_COLUMNS: dict[str, str] = {
    "image_id": "int64",
    "face_index": "int64",
    "x": "int64",
    "y": "int64",
    "w": "int64",
    "h": "int64",
    **{column: "float64" for column in LANDMARK_COLUMNS},
    **{column: "int64" for column in ATTRIBUTE_COLUMNS},
    **{column: "boolean" for column in KEEP_COLUMNS},
}


def _conform(frame: pd.DataFrame, columns: dict[str, str], name: str) -> pd.DataFrame:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} table is missing columns {missing}")
    return frame.loc[:, list(columns)].astype(columns).reset_index(drop=True)


def conform_images(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with exactly the ``images`` columns, in order and with their dtypes."""
    return _conform(frame, IMAGE_COLUMNS, "images")


def conform_faces(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with exactly the ``faces`` columns, in order and with their dtypes."""
    return _conform(frame, FACE_COLUMNS, "faces")


def empty_images() -> pd.DataFrame:
    """An ``images`` table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in IMAGE_COLUMNS.items()})


def empty_faces() -> pd.DataFrame:
    """A ``faces`` table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FACE_COLUMNS.items()})
