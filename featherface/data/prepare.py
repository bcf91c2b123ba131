"""The ``prepare`` stage: a WIDER-format folder -> validated canonical tables.

Outputs (all written into a temporary folder and swapped in only when complete):

- ``images.parquet``, ``faces.parquet``: the canonical tables (:mod:`featherface.data.schema`);
- ``dataset.json``: the source and the root folder the image paths are relative to;
- ``validation.json`` and ``validation.md``: every check, its outcome, and what was dropped;
- ``stats.json``: images, faces and easy/medium/hard counts per split (a DVC metrics file);
- ``face_heights.png``: histogram of face heights;
- ``synthetic/``: for ``data.source: synthetic``, the generated WIDER-layout folder itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from featherface.data.layout import (
    WiderLayout,
    image_files,
    read_annotations,
    resolve_root,
    write_annotations,
)
from featherface.data.schema import SPLITS, conform_faces, conform_images
from featherface.data.stats import dataset_statistics, plot_face_heights
from featherface.data.synthetic import SyntheticConfig, generate_split
from featherface.data.validation import ValidationReport, validate_tables
from featherface.errors import FeatherFaceError
from featherface.params import DataParams
from featherface.utils.atomic import staged_dir, write_json, write_text

SYNTHETIC_FOLDER = "synthetic"
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class PreparedData:
    """What ``prepare`` produced: the tables and the folder their image paths are relative to."""

    images: pd.DataFrame
    faces: pd.DataFrame
    root: Path
    source: str

    def image_path(self, row: pd.Series) -> Path:
        """Absolute path of one ``images`` row."""
        return WiderLayout(self.root).images_dir(row["split"]) / row["path"]


def write_synthetic_dataset(
    root: Path, config: SyntheticConfig, progress: ProgressCallback | None = None
) -> None:
    """Generate both splits into ``root`` in the exact WIDER FACE layout."""
    images_parts, faces_parts = [], []
    for split in SPLITS:
        total = config.num_train if split == "train" else config.num_val
        first_id = sum(len(part) for part in images_parts)
        report = (
            (lambda done, s=split, n=total: progress(f"generate {s}", done, n))
            if progress
            else None
        )
        images, faces = generate_split(
            WiderLayout(root).images_dir(split),
            split,
            config,
            first_image_id=first_id,
            progress=report,
        )
        images_parts.append(images)
        faces_parts.append(faces)
    write_annotations(root, pd.concat(images_parts), pd.concat(faces_parts))


def _summary_markdown(report: ValidationReport, statistics: dict[str, Any]) -> str:
    lines = [
        "# Data validation",
        "",
        f"Result: {'passed' if report.success else 'rows dropped'}",
        "",
    ]
    lines += ["| table | check | kind | rows | failing |", "|---|---|---|---|---|"]
    for result in report.results:
        kind = "structural" if result.check.structural else "row"
        lines.append(
            f"| {result.check.table} | {result.check.description} | {kind} "
            f"| {result.element_count} | {len(result.failing_rows)} |"
        )
    lines += ["", "Dropped faces: " + ", ".join(f"{k}: {v}" for k, v in report.dropped.items()), ""]
    lines += ["| split | images | faces | easy | medium | hard |", "|---|---|---|---|---|---|"]
    for split, entry in statistics.items():
        counts = [entry.get(key, "-") for key in ("images", "faces", "easy", "medium", "hard")]
        lines.append(f"| {split} | " + " | ".join(str(value) for value in counts) + " |")
    return "\n".join(lines) + "\n"


def _dataset_root(params: DataParams, staging: Path, progress: ProgressCallback | None) -> Path:
    if params.source == "synthetic":
        root = staging / SYNTHETIC_FOLDER
        write_synthetic_dataset(root, params.synthetic, progress)
        return root
    root = resolve_root(params.widerface_root)
    # DVC tracks the folder for both sources; for real data it only says where the images are.
    note = f"data.source is widerface: images are read from {root.resolve()}\n"
    write_text(staging / SYNTHETIC_FOLDER / "README.txt", note)
    return root


def prepare(
    params: DataParams, out_dir: str | Path, progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Run the whole stage into ``out_dir``; return the statistics (also in ``stats.json``)."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as staging:
        root = _dataset_root(params, staging, progress)
        if progress:
            progress("read annotations", 0, 1)
        images, faces = read_annotations(root)
        if progress:
            progress("read annotations", 1, 1)
            progress("validate", 0, 1)
        paths = image_files(root, images)
        images, faces, report = validate_tables(
            images,
            faces,
            paths,
            params.box_tolerance_px,
            params.landmark_tolerance,
            params.on_bad_rows,
        )
        if progress:
            progress("validate", 1, 1)
        images, faces = conform_images(images), conform_faces(faces)
        statistics = dataset_statistics(images, faces)
        statistics["dropped"] = dict(report.dropped)
        images.to_parquet(staging / "images.parquet", index=False)
        faces.to_parquet(staging / "faces.parquet", index=False)
        stored_root = SYNTHETIC_FOLDER if params.source == "synthetic" else str(root.resolve())
        write_json(staging / "dataset.json", {"source": params.source, "root": stored_root})
        write_json(staging / "validation.json", report.to_dict())
        write_text(staging / "validation.md", _summary_markdown(report, statistics))
        write_json(staging / "stats.json", statistics)
        plot_face_heights(images, faces, staging / "face_heights.png")
    return statistics


def load_prepared(prepare_dir: str | Path = "stages/prepare") -> PreparedData:
    """Read the outputs of ``prepare`` (for downstream stages)."""
    prepare_dir = Path(prepare_dir)
    index_path = prepare_dir / "dataset.json"
    if not index_path.is_file():
        raise FeatherFaceError(f"{index_path}: not found; run `featherface prepare` first")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    root = Path(index["root"])
    if not root.is_absolute():
        root = prepare_dir / root
    images = pd.read_parquet(prepare_dir / "images.parquet")
    faces = pd.read_parquet(prepare_dir / "faces.parquet")
    return PreparedData(images, faces, root, index["source"])
