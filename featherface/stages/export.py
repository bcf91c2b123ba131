"""Stage ``export``: ONNX (raw outputs, and with decoding and NMS inside) and TorchScript files of
the final Nano-B and of the teacher, checked against PyTorch
(:func:`featherface.export.artifacts.export_checkpoints`), with CPU latency; both models are
registered in the MLflow model registry.

Published to MLflow: the parity and latency figures as metrics (named as DVC names them,
``models.model.checks.synthetic_val.onnx_raw.max_abs_diff``), ``parity.json``, ``latency.json``
and the ONNX files as artifacts under ``export/``, and each exported model as a new version of
the registered model named by its architecture (``featherface-nano-b``, ``featherface-v1``;
:func:`featherface.export.registry.register_version`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from featherface.export.artifacts import export_checkpoints
from featherface.export.registry import register_version
from featherface.params import load_params, section_dict
from featherface.terminal import (
    OutOption,
    ParamsOption,
    PrepareOption,
    console,
    reports_errors,
    say,
)
from featherface.tracking import Tracker, flatten, stage_run

ARTIFACT_FOLDER = "export"


def publish(tracker: Tracker, report: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Log and register what the module docstring lists; returns ``{architecture: version}``
    (empty when tracking is off)."""
    if not tracker.enabled:
        return {}
    latency = json.loads((out_dir / "latency.json").read_text(encoding="utf-8"))
    tracker.log_metrics(flatten(report))
    tracker.log_metrics(flatten({k: v for k, v in latency.items() if k != "settings"}))
    for name in ("parity.json", "latency.json"):
        tracker.log_artifact(out_dir / name, ARTIFACT_FOLDER)
    for path in sorted(out_dir.glob("*.onnx")):
        tracker.log_artifact(path, ARTIFACT_FOLDER)
    versions = {}
    for stem, entry in report["models"].items():
        versions[entry["arch"]] = register_version(
            entry["arch"], out_dir / f"{stem}.onnx", Path(entry["checkpoint"]),
            {"featherface.export_file": f"{stem}.onnx"},
        )  # fmt: skip
    return versions


def latency_lines(path: Path) -> list[str]:
    """One line per model of ``latency.json``, or why it was not measured."""
    latency = json.loads(path.read_text(encoding="utf-8"))
    if "skipped" in latency:
        return [f"latency not measured: {latency['skipped']}"]
    return [
        f"{name}: {entry['latency_ms_cpu_640']:.1f} ms end to end "
        f"({entry['network_ms_cpu_640']:.1f} ms network), "
        f"{entry['ratio_to_retinaface_mnet025']:.2f}x RetinaFace-mnet0.25 "
        "(640 px, 1 thread, ONNX Runtime)"
        for name, entry in latency.items()
        if name != "settings"
    ]


def parity_table(report: Mapping[str, Any]) -> Table:
    """One row per model, image set and check: largest difference, faces, passed."""
    table = Table(title=f"export parity (atol {report['atol']:g})")
    for column in ("model", "images", "check", "max diff", "faces", "passed"):
        table.add_column(column, justify="left" if column in ("model", "check") else "right")
    for stem, entry in report["models"].items():
        for images, checks in entry["checks"].items():
            if "skipped" in checks:
                table.add_row(stem, images, "skipped", "", "", checks["skipped"])
                continue
            for check, figures in checks.items():
                diff = (
                    f"{figures['max_abs_diff']:.2e}"
                    if "max_abs_diff" in figures
                    else f"{figures['max_box_diff_px']:.2e} px"
                )
                faces = str(figures["faces"]) if "faces" in figures else ""
                table.add_row(
                    stem, f"{images} ({figures['images']})", check, diff, faces,
                    "yes" if figures["passed"] else "no",
                )  # fmt: skip
    return table


@reports_errors
def export(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="Final Nano-B checkpoint (pruned, fine-tuned).")] = (
        Path("stages/finetune/model.pt")
    ),
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint (FeatherFace V1).")] = Path(
        "stages/teacher/model.pt"
    ),
    prepare_dir: PrepareOption = Path("stages/prepare"),
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference folder with widerface/val4 images; default: $FEATHERFACE_REFERENCE "
            "or ../shared/reference beside the repository."
        ),
    ] = None,
    out: OutOption = Path("stages/export"),
) -> None:
    """Stage `export`: ONNX (raw and with NMS inside), TorchScript, parity.json and
    latency.json; exit 1 and no outputs when a parity check fails."""
    settings = load_params(params)
    sections = {"export": section_dict(settings.export)}
    checkpoints = {"model": model, "teacher": teacher}
    with stage_run(
        "export", sections, settings.tracking.experiment, settings.tracking.enabled
    ) as tracker:
        report = export_checkpoints(settings.export, checkpoints, prepare_dir, out, reference, say)
        versions = publish(tracker, report, out)
    console.print(parity_table(report))
    for line in latency_lines(out / "latency.json"):
        say(line)
    for name, version in versions.items():
        say(f"registered {name} version {version}")
    say(f"all parity checks passed; outputs in {out}")
