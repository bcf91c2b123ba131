"""Inspection commands: ``info``, ``detect``, ``wider-ap``, ``import-weights``, ``data download``,
``data validate`` and ``prune groups``: look at models, data and detections without running a
stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from featherface.errors import FeatherFaceError
from featherface.terminal import OutOption, StudentOption, console, reports_errors


@reports_errors
def data_download(
    dataset: Annotated[Literal["widerface"], typer.Argument(help="Data set to fetch.")],
    dest: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("data"),
    eval_tools: Annotated[bool, typer.Option(help="Also fetch the evaluation .mat files.")] = True,
) -> None:
    """Download WIDER FACE (images, split files, evaluation ground truth) via torchvision."""
    from featherface.data.download import download_widerface

    root = download_widerface(dest, eval_tools=eval_tools)
    console.print(
        f"WIDER FACE is in {root}; set data.source: widerface and data.widerface_root: {root}"
    )


@reports_errors
def data_validate(
    folder: Annotated[Path, typer.Argument(help="A WIDER-layout folder.")],
    on_bad_rows: Annotated[
        Literal["fail", "drop"], typer.Option(help="Row failures: fail or drop.")
    ] = "drop",
    box_tolerance_px: Annotated[
        float, typer.Option(help="Allowed box overflow past the image.")
    ] = 2.0,
    landmark_tolerance: Annotated[
        float, typer.Option(help="Allowed landmark distance outside the box, in box sizes.")
    ] = 0.5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here.")
    ] = None,
) -> None:
    """Run the prepare stage's checks on any WIDER-layout folder; exit 1 if a check fails."""
    from featherface.data.layout import image_files, read_annotations, resolve_root
    from featherface.data.validation import validate_tables
    from featherface.utils.atomic import write_json

    root = resolve_root(folder)
    images, faces = read_annotations(root)
    paths = image_files(root, images)
    _, _, report = validate_tables(
        images, faces, paths, box_tolerance_px, landmark_tolerance, on_bad_rows
    )
    table = Table(title=f"checks on {root}")
    for column in ("table", "check", "rows", "failing"):
        table.add_column(column)
    for result in report.results:
        status = "[green]0[/green]" if result.success else f"[red]{len(result.failing_rows)}[/red]"
        table.add_row(
            result.check.table, result.check.description, str(result.element_count), status
        )
    console.print(table)
    for line in report.failure_lines(limit=20):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"dropped faces: {json.dumps(report.dropped)}")
    if json_out is not None:
        write_json(json_out, report.to_dict())
    if not report.success:
        raise typer.Exit(code=1)


@reports_errors
def import_weights(
    src: Annotated[Path, typer.Argument(help="Checkpoint in the original code's key layout.")],
    dest: Annotated[Path, typer.Argument(help="Where to write the converted checkpoint.")],
    arch: Annotated[
        Literal["featherface-v1", "retinaface-mnet025"], typer.Option(help="Architecture.")
    ] = "featherface-v1",
) -> None:
    """Convert a published checkpoint into this package's layout (every tensor used)."""
    from featherface.models.checkpoint import save_checkpoint
    from featherface.models.convert import load_reference_checkpoint

    model = load_reference_checkpoint(arch, src)
    save_checkpoint(dest, arch, model)
    count = sum(parameter.numel() for parameter in model.parameters())
    console.print(f"{arch}: {count:,} parameters converted from {src} to {dest}")


@reports_errors
def info(
    name: Annotated[
        str,
        typer.Argument(
            help="Registered model name (e.g. featherface-v1), a .pt checkpoint of this package "
            "(e.g. stages/finetune/model.pt) or an .onnx file."
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    size: Annotated[int, typer.Option(help="Square input side for GMACs and anchors.")] = 640,
) -> None:
    """Per-module parameters (true and paper convention), GMACs and anchors of a model; for an
    ONNX file its stored weights, inputs, outputs and export metadata."""
    from featherface.models.summary import model_summary

    if name.endswith(".onnx"):
        _onnx_info(Path(name), json_output)
        return
    summary = model_summary(_network(name), name, size)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{name} at {size}x{size}")
    for column in ("module", "params", "params (paper)", "GMACs"):
        table.add_column(column, justify="right" if column != "module" else "left")
    for row in summary["modules"]:
        paper = "" if row["params_paper"] == row["params_total"] else f"{row['params_paper']:,}"
        table.add_row(row["name"], f"{row['params_total']:,}", paper, f"{row['gmacs']:.3f}")
    paper_total = f"{summary['params_paper']:,}"
    table.add_row(
        "total", f"{summary['params_total']:,}", paper_total, f"{summary[f'gmacs_{size}']:.3f}"
    )
    console.print(table)
    console.print(f"anchors at {size}x{size}: {summary['anchors']:,}")


def _network(name: str) -> Any:
    """The network ``featherface info`` describes: a checkpoint file (``*.pt``, loaded without
    running code) or a registered name."""
    from featherface.models import build_model
    from featherface.models.checkpoint import load_checkpoint

    if name.endswith(".pt"):
        if not Path(name).is_file():
            raise FeatherFaceError(f"{name}: checkpoint not found")
        return load_checkpoint(name).eval()
    return build_model(name)


def _onnx_info(path: Path, json_output: bool) -> None:
    from featherface.export.onnx_export import onnx_summary

    if not path.is_file():
        raise FeatherFaceError(f"{path}: ONNX file not found")
    summary = onnx_summary(path)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
        return
    metadata = summary["metadata"]
    console.print(f"{path}: ONNX opset {summary['opset']}")
    console.print(f"stored weights (BatchNorm folded): {summary['graph_weights']:,}")
    if "params_total" in metadata:
        console.print(
            f"exported from {metadata.get('arch')}: {metadata['params_total']:,} parameters"
        )
    console.print(
        f"inputs: {', '.join(summary['inputs'])}; outputs: {', '.join(summary['outputs'])}"
    )


@reports_errors
def wider_ap(
    predictions: Annotated[Path, typer.Argument(help="Folder <event>/<name>.txt of predictions.")],
    gt: Annotated[
        Path,
        typer.Option(help="Ground truth: a folder of the official .mat files, or stages/prepare."),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print only the JSON.")] = False,
    missing_as_empty: Annotated[
        bool, typer.Option(help="Count missing or empty prediction files as no detections.")
    ] = False,
) -> None:
    """WIDER FACE easy/medium/hard AP with the official protocol."""
    import warnings

    from featherface.evaluate.ground_truth import load_ground_truth
    from featherface.evaluate.predictions import EvaluationWarning, read_prediction_dir
    from featherface.evaluate.wider_ap import evaluate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EvaluationWarning)
        try:
            truth = load_ground_truth(gt)
            found = read_prediction_dir(
                predictions, truth.expected(), missing_as_empty=missing_as_empty
            )
            result = evaluate(found, truth, missing_as_empty=missing_as_empty)
        finally:
            for warning in caught:
                line = " ".join(str(warning.message).split())
                console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    if not json_output:
        table = Table(title=f"WIDER FACE AP of {predictions}")
        for column in ("setting", "faces", "AP"):
            table.add_column(column, justify="right")
        for setting, value in result.ap.items():
            table.add_row(setting, f"{result.faces[setting]:,}", f"{value:.4f}")
        console.print(table)
    typer.echo(json.dumps(result.ap))


@reports_errors
def detect(
    inputs: Annotated[Path, typer.Argument(help="An image or a folder of images.")],
    model: Annotated[Path, typer.Option(help="A .pt checkpoint of this package or an .onnx file.")],
    out: OutOption = Path("detections"),
    score_threshold: Annotated[float, typer.Option(help="Draw faces scoring above this.")] = 0.5,
    nms_iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.4,
    mode: Annotated[
        Literal["original", "resize", "multiscale"],
        typer.Option(help="original size, longer side resized to --size, or multi-scale + flip."),
    ] = "original",
    size: Annotated[int, typer.Option(help="Longer side for --mode resize.")] = 640,
) -> None:
    """Detect faces; write annotated images (boxes, scores, 5 landmarks) and detections.json."""
    from featherface.evaluate.draw import run_detect

    document = run_detect(model, inputs, out, score_threshold, mode, size, nms_iou)
    faces = sum(len(entry["faces"]) for entry in document["images"])
    console.print(f"{faces} faces in {len(document['images'])} images; results in {out}")


@reports_errors
def prune_groups(
    student: StudentOption = Path("stages/distill/model.pt"),
    arch: Annotated[
        str, typer.Option(help="Registered model to inspect when the checkpoint is absent.")
    ] = "featherface-nano-b",
) -> None:
    """Print the six layer groups: their channel groups, widths and parameters."""
    from featherface.models import build_model
    from featherface.models.checkpoint import load_checkpoint
    from featherface.models.complexity import params_total
    from featherface.prune.groups import PruningGraph, group_parameters

    model = load_checkpoint(student) if student.is_file() else build_model(arch)
    graph = PruningGraph(model)
    table = Table(title=f"{'checkpoint ' + str(student) if student.is_file() else arch}")
    table.add_column("layer group")
    table.add_column("root layer")
    for column in ("channels", "layers", "layer parameters"):
        table.add_column(column, justify="right")
    for name, groups in graph.by_layer_group().items():
        for group in groups:
            table.add_row(
                name, group.root, str(group.channels), str(len(group.layers)),
                f"{group_parameters(model, group):,}",
            )  # fmt: skip
    console.print(table)
    console.print(f"parameters of the whole network: {params_total(model):,}")
