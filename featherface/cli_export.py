"""The ``featherface export`` command (stage ``export``): ONNX and TorchScript files of the final
Nano-B and of the teacher, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from featherface.cli import ParamsOption, app, console, reports_errors


@app.command("export")
@reports_errors
def export_command(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="Final Nano-B checkpoint (pruned, fine-tuned).")] = (
        Path("stages/finetune/model.pt")
    ),
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint (FeatherFace V1).")] = Path(
        "stages/teacher/model.pt"
    ),
    prepare_dir: Annotated[Path, typer.Option(help="Output of prepare.")] = Path("stages/prepare"),
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference folder with widerface/val4 images; default: $FEATHERFACE_REFERENCE "
            "or ../shared/reference beside the repository."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/export"),
) -> None:
    """Stage `export`: ONNX (raw and with NMS inside), TorchScript, parity.json and
    latency.json; exit 1 and no outputs when a parity check fails."""
    from featherface.export.stage import export_stage, log_export
    from featherface.params import load_params, section_dict
    from featherface.tracking import stage_run

    settings = load_params(params)
    run_params = {"export": section_dict(settings.export)}
    checkpoints = {"model": model, "teacher": teacher}
    with stage_run(
        "export", run_params, settings.tracking.experiment, settings.tracking.enabled
    ) as mlflow:
        report = export_stage(
            settings.export, checkpoints, prepare_dir, out, reference,
            lambda line: console.print(line),
        )  # fmt: skip
        versions = log_export(mlflow, report, out) if mlflow is not None else {}
    console.print(_parity_table(report))
    _print_latency(out / "latency.json")
    for name, version in versions.items():
        console.print(f"registered {name} version {version}")
    console.print(f"all parity checks passed; outputs in {out}")


def _print_latency(path: Path) -> None:
    import json

    latency = json.loads(path.read_text(encoding="utf-8"))
    if "skipped" in latency:
        console.print(f"latency not measured: {latency['skipped']}")
        return
    for name, entry in latency.items():
        if name != "settings":
            console.print(
                f"{name}: {entry['latency_ms_cpu_640']:.1f} ms end to end "
                f"({entry['network_ms_cpu_640']:.1f} ms network), "
                f"{entry['ratio_to_retinaface_mnet025']:.2f}x RetinaFace-mnet0.25 "
                "(640 px, 1 thread, ONNX Runtime)"
            )


def _parity_table(report: dict) -> Table:
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
