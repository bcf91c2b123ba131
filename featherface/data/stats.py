"""Data-set statistics for the ``prepare`` stage: counts per split and difficulty, size plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featherface.data.schema import DIFFICULTIES, SPLITS


def dataset_statistics(images: pd.DataFrame, faces: pd.DataFrame) -> dict[str, Any]:
    """Images, faces and kept faces per difficulty for each split, plus face-height quantiles.

    Returns a nested dict such as ``{"val": {"images": 200, "faces": 2810, "easy": 412, ...,
    "face_height_median": 31.0}}``; difficulty counts appear only where keep lists exist.
    """
    split_of = images.set_index("image_id")["split"]
    face_split = faces["image_id"].map(split_of)
    statistics: dict[str, Any] = {}
    for split in SPLITS:
        split_faces = faces[face_split == split]
        entry: dict[str, Any] = {
            "images": int((images["split"] == split).sum()),
            "faces": len(split_faces),
        }
        for name in DIFFICULTIES:
            column = split_faces[f"keep_{name}"]
            if len(column) and column.notna().all():
                entry[name] = int(column.sum())
        if len(split_faces):
            heights = split_faces["h"].to_numpy(float)
            for label, q in (("p10", 0.1), ("median", 0.5), ("p90", 0.9)):
                entry[f"face_height_{label}"] = round(float(np.quantile(heights, q)), 1)
        statistics[split] = entry
    return statistics


def plot_face_heights(images: pd.DataFrame, faces: pd.DataFrame, path: Path) -> None:
    """Histogram of face box heights (log-spaced bins) per split, with val split by difficulty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split_of = images.set_index("image_id")["split"]
    face_split = faces["image_id"].map(split_of)
    heights = faces["h"].clip(lower=1).to_numpy(float)
    lower = float(heights.min()) if len(heights) else 1.0
    upper = max(float(heights.max()) if len(heights) else 2.0, lower * 2)
    bins = np.geomspace(lower * 0.95, upper * 1.05, 40)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for split in SPLITS:
        axes[0].hist(heights[face_split == split], bins=bins, histtype="step", label=split)
    val = faces[face_split == "val"]
    for name in reversed(DIFFICULTIES):
        keep = val[f"keep_{name}"].fillna(False).to_numpy(bool)
        if keep.any():
            axes[1].hist(val["h"].to_numpy(float)[keep], bins=bins, alpha=0.5, label=name)
    for axis, title in zip(axes, ("faces per split", "val faces kept per setting"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("face box height (px)")
        axis.set_ylabel("faces")
        axis.set_title(title)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
