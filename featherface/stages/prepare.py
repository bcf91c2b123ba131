"""Stage ``prepare``: generate the synthetic set or read WIDER FACE, validate it, and write the
canonical tables (:func:`featherface.data.prepare.prepare`) to ``stages/prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from featherface.data.prepare import prepare as prepare_data
from featherface.params import load_params, section_dict
from featherface.terminal import OutOption, ParamsOption, console, progress_reporter, reports_errors
from featherface.tracking import flatten, stage_run

LOGGED_FILES = ("stats.json", "validation.json", "validation.md", "face_heights.png")


def statistics_table(statistics: dict[str, Any]) -> Table:
    """Images, faces and easy/medium/hard faces per split."""
    table = Table(title="prepared data")
    for column in ("split", "images", "faces", "easy", "medium", "hard"):
        table.add_column(column, justify="right")
    for split in ("train", "val"):
        entry = statistics.get(split, {})
        keys = ("images", "faces", "easy", "medium", "hard")
        table.add_row(split, *(str(entry.get(key, "-")) for key in keys))
    return table


@reports_errors
def prepare(
    params: ParamsOption = Path("params.yaml"),
    out: OutOption = Path("stages/prepare"),
) -> None:
    """Stage `prepare`: generate or read WIDER FACE, validate it, write canonical tables."""
    settings = load_params(params)
    sections = {"data": section_dict(settings.data)}
    with stage_run(
        "prepare", sections, settings.tracking.experiment, settings.tracking.enabled
    ) as tracker:
        with progress_reporter() as report:
            statistics = prepare_data(settings.data, out, progress=report)
        tracker.log_metrics(flatten(statistics))
        for name in LOGGED_FILES:
            tracker.log_artifact(out / name)
    console.print(statistics_table(statistics))
    console.print(f"dropped faces: {statistics['dropped']}; outputs in {out}")
