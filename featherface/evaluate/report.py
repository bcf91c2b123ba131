"""Evaluation outputs people read: PR-curve tables (DVC plots), a PNG of the curves, a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featherface.evaluate.wider_ap import WiderResult
from featherface.utils.atomic import write_text

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")


def pr_table(model: str, setting: str, result: WiderResult) -> pd.DataFrame:
    """One PR curve as rows ``model, threshold, recall, precision`` (thresholds descending;
    thresholds that no prediction passes are left out, as their precision is undefined)."""
    recall, precision = result.curves[setting]
    defined = ~np.isnan(precision)
    return pd.DataFrame(
        {
            "model": model,
            "threshold": result.thresholds[defined],
            "recall": recall[defined],
            "precision": precision[defined],
        }
    )


def write_pr_tables(results: dict[str, WiderResult], folder: Path) -> list[Path]:
    """``<folder>/pr_<setting>.csv`` holding every model's curve: one DVC plot per setting."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for setting in SETTINGS:
        tables = [pr_table(model, setting, result) for model, result in results.items()]
        path = folder / f"pr_{setting}.csv"
        write_text(path, pd.concat(tables, ignore_index=True).to_csv(index=False))
        paths.append(path)
    return paths


def plot_pr_curves(results: dict[str, WiderResult], path: Path) -> None:
    """Precision against recall, one panel per setting, one line per model, AP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for axis, setting in zip(axes, SETTINGS, strict=True):
        for model, result in results.items():
            recall, precision = result.curves[setting]
            axis.plot(recall, precision, label=f"{model} ({result.ap[setting]:.3f})")
        axis.set_title(f"WIDER {setting}")
        axis.set_xlabel("recall")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("precision")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report_markdown(metrics: dict[str, dict[str, Any]], plot_name: str) -> str:
    """A short markdown report: one row per model, then the PR plot."""
    lines = [
        "# Evaluation",
        "",
        "WIDER FACE protocol (official evaluation logic) on the validation split.",
        "",
        "| model | AP easy | AP medium | AP hard | params | GMACs at 640 |",
        "|---|---|---|---|---|---|",
    ]
    for model, entry in metrics.items():
        gmacs = entry.get("gmacs_640")
        lines.append(
            f"| {model} | {entry['ap_easy']:.4f} | {entry['ap_medium']:.4f} | "
            f"{entry['ap_hard']:.4f} | {entry['params_total']:,} | "
            f"{'-' if gmacs is None else f'{gmacs:.3f}'} |"
        )
    lines += ["", f"![PR curves]({plot_name})", ""]
    return "\n".join(lines)
