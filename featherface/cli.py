"""The ``featherface`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from featherface.errors import FeatherFaceError

app = typer.Typer(
    help="FeatherFace: train, distil, prune, export and evaluate tiny face detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Download and check WIDER-format data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameter file.")]


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`FeatherFaceError` into one line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FeatherFaceError as error:
            console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper


@contextmanager
def progress_reporter() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields ``report(task, done, total)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def report(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = progress.add_task(task, total=total)
            progress.update(tasks[task], completed=done, total=total)

        yield report


def _statistics_table(statistics: dict[str, Any]) -> Table:
    table = Table(title="prepared data")
    for column in ("split", "images", "faces", "easy", "medium", "hard"):
        table.add_column(column, justify="right")
    for split in ("train", "val"):
        entry = statistics.get(split, {})
        keys = ("images", "faces", "easy", "medium", "hard")
        table.add_row(split, *(str(entry.get(key, "-")) for key in keys))
    return table


@app.command()
@reports_errors
def prepare(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/prepare"),
) -> None:
    """Stage `prepare`: generate or read WIDER FACE, validate it, write canonical tables."""
    from featherface.data.prepare import prepare as run_prepare
    from featherface.params import load_params, section_dict
    from featherface.tracking import flatten, stage_run

    settings = load_params(params)
    with stage_run(
        "prepare",
        {"data": section_dict(settings.data)},
        settings.tracking.experiment,
        settings.tracking.enabled,
    ) as mlflow:
        with progress_reporter() as report:
            statistics = run_prepare(settings.data, out, progress=report)
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in flatten(statistics).items()})
            for name in ("stats.json", "validation.json", "validation.md", "face_heights.png"):
                mlflow.log_artifact(str(out / name))
    console.print(_statistics_table(statistics))
    console.print(f"dropped faces: {statistics['dropped']}; outputs in {out}")


@data_app.command("download")
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


@data_app.command("validate")
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
    console.print(f"dropped faces: {json.dumps(report.dropped)}")
    if json_out is not None:
        write_json(json_out, report.to_dict())
    if not report.success:
        raise typer.Exit(code=1)


@app.command("import-weights")
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


@app.command()
@reports_errors
def info(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. featherface-v1.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    size: Annotated[int, typer.Option(help="Square input side for GMACs and anchors.")] = 640,
) -> None:
    """Per-module parameters (true and paper convention), GMACs and anchors of a model."""
    from featherface.models import build_model
    from featherface.models.summary import model_summary

    summary = model_summary(build_model(name), name, size)
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


@app.command("wider-ap")
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
    from featherface.evaluate.ground_truth import load_ground_truth
    from featherface.evaluate.predictions import read_prediction_dir
    from featherface.evaluate.wider_ap import evaluate

    truth = load_ground_truth(gt)
    found = read_prediction_dir(predictions, truth.expected(), missing_as_empty=missing_as_empty)
    result = evaluate(found, truth, missing_as_empty=missing_as_empty)
    if not json_output:
        table = Table(title=f"WIDER FACE AP of {predictions}")
        for column in ("setting", "faces", "AP"):
            table.add_column(column, justify="right")
        for setting, value in result.ap.items():
            table.add_row(setting, f"{result.faces[setting]:,}", f"{value:.4f}")
        console.print(table)
    typer.echo(json.dumps(result.ap))


@app.command()
@reports_errors
def detect(
    inputs: Annotated[Path, typer.Argument(help="An image or a folder of images.")],
    model: Annotated[Path, typer.Option(help="A .pt checkpoint of this package or an .onnx file.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("detections"),
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


def _parse_models(entries: list[str], option: str = "--model") -> dict[str, Path]:
    models = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name or not path:
            raise FeatherFaceError(f"{option} expects NAME=PATH, got {entry!r}")
        models[name] = Path(path)
    return models


@app.command("evaluate")
@reports_errors
def evaluate_command(
    params: ParamsOption = Path("params.yaml"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH of a model to score; default: every pipeline model present."),
    ] = None,
    stored: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH of the val_detections.npz kept by model NAME's training stage, used "
            "instead of running the model when made by the same model file, data, code and "
            "settings; default without --model: the files next to the pipeline's models."
        ),
    ] = None,
    prepare_dir: Annotated[Path, typer.Option(help="Output of prepare.")] = Path("stages/prepare"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/evaluate"),
) -> None:
    """Stage `evaluate`: WIDER FACE AP, PR curves and a report for each model."""
    from featherface.evaluate.stage import (
        evaluate_models,
        pipeline_models,
        stored_detection_files,
    )
    from featherface.params import load_params, section_dict
    from featherface.tracking import child_run, stage_run

    settings = load_params(params)
    models = _parse_models(model) if model else pipeline_models()
    for name, path in models.items():
        if not path.is_file():
            raise FeatherFaceError(f"{path}: model file of {name!r} not found")
    if stored:
        stored_files = _parse_models(stored, "--stored")
    else:
        stored_files = {} if model else stored_detection_files(models)
    run_params = {"evaluate": section_dict(settings.evaluate)}
    with stage_run(
        "evaluate", run_params, settings.tracking.experiment, settings.tracking.enabled
    ) as mlflow:
        with progress_reporter() as report:
            metrics, _ = evaluate_models(
                models, prepare_dir, out, settings.evaluate, report, stored_files, console.print
            )
        if mlflow is not None:
            # on the stage run as DVC names them (teacher.ap_hard), for the MLflow UI's run table
            mlflow.log_metrics(
                {
                    f"{name}.{key}": float(value)
                    for name, values in metrics.items()
                    for key, value in values.items()
                    if value is not None
                }
            )
            for name, values in metrics.items():
                with child_run(name, {"featherface.model": name}):
                    mlflow.log_param("model_path", str(models[name]))
                    mlflow.log_metrics({k: float(v) for k, v in values.items() if v is not None})
            mlflow.log_artifacts(str(out), artifact_path="evaluate")
    table = Table(title="WIDER FACE AP (validation split)")
    for column in ("model", "easy", "medium", "hard", "params"):
        table.add_column(column, justify="right")
    for name, values in metrics.items():
        aps = (f"{values[f'ap_{s}']:.4f}" for s in ("easy", "medium", "hard"))
        table.add_row(name, *aps, f"{values['params_total']:,}")
    console.print(table)


def _tracks(enabled: bool) -> bool:
    """Whether this process logs to MLflow: ``enabled``, and rank 0 under ``torchrun``."""
    return enabled and os.environ.get("RANK", "0") == "0"


def _relaunch_under_torchrun(settings: Any, stage: str, arguments: list[str]) -> None:
    """Run ``featherface <arguments>`` under torchrun and exit with its status when the ``train``
    section asks for several processes (:mod:`featherface.engine.launch`); else return."""
    import shlex
    import subprocess

    from featherface.engine.launch import torchrun_command

    command = torchrun_command(settings.train, stage, arguments)
    if command is None:
        return
    console.print(f"{stage}: {shlex.join(command)}", highlight=False, soft_wrap=True)
    raise typer.Exit(subprocess.run(command, check=False).returncode)


def _log_training(mlflow: Any, metrics: dict[str, Any], out: Path) -> None:
    """Log a training stage's final metrics and its metrics and history files to MLflow."""
    if mlflow is None or not metrics:
        return
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
    for name in ("metrics.json", "history.csv"):
        mlflow.log_artifact(str(out / name))


@app.command()
@reports_errors
def train(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option(help="Output of prepare.")] = Path("stages/prepare"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/teacher"),
) -> None:
    """Stage `teacher`: train `teacher.arch` (FeatherFace V1) on the prepared data."""
    from featherface.engine.teacher import train_detector
    from featherface.params import load_params, section_dict
    from featherface.tracking import stage_run

    settings = load_params(params)
    _relaunch_under_torchrun(
        settings, "teacher",
        ["train", "--params", str(params), "--prepare-dir", str(prepare_dir), "--out", str(out)],
    )  # fmt: skip
    run_params = {
        "model": section_dict(settings.model),
        "train": section_dict(settings.train),
        "teacher": section_dict(settings.teacher),
    }
    with stage_run(
        "teacher", run_params, settings.tracking.experiment, _tracks(settings.tracking.enabled)
    ) as mlflow:
        metrics = train_detector(settings.teacher, settings.model, prepare_dir, out, mlflow)
        _log_training(mlflow, metrics, out)
    if metrics:
        console.print(" ".join(f"{key}={value:.4g}" for key, value in metrics.items()))


@app.command()
@reports_errors
def distill(
    params: ParamsOption = Path("params.yaml"),
    prepare_dir: Annotated[Path, typer.Option(help="Output of prepare.")] = Path("stages/prepare"),
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint.")] = Path(
        "stages/teacher/model.pt"
    ),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stages/distill"),
) -> None:
    """Stage `distill`: train the `distill.arch` student (Nano-B) from the ground truth and the
    frozen teacher."""
    from featherface.engine.student import distill_student
    from featherface.params import load_params, section_dict
    from featherface.tracking import stage_run

    settings = load_params(params)
    arguments = ["distill", "--params", str(params), "--prepare-dir", str(prepare_dir)]
    arguments += ["--teacher", str(teacher), "--out", str(out)]
    _relaunch_under_torchrun(settings, "distill", arguments)
    run_params = {
        "model": section_dict(settings.model),
        "train": section_dict(settings.train),
        "distill": section_dict(settings.distill),
    }
    with stage_run(
        "distill", run_params, settings.tracking.experiment, _tracks(settings.tracking.enabled)
    ) as mlflow:
        metrics = distill_student(
            settings.distill, settings.model, prepare_dir, teacher, out, mlflow
        )
        _log_training(mlflow, metrics, out)
    if metrics:
        console.print(" ".join(f"{key}={value:.4g}" for key, value in metrics.items()))


# The other command modules register themselves on ``app`` when imported.
from featherface import cli_bench  # noqa: E402, F401, I001  (registers `bench`)
from featherface import cli_export  # noqa: E402, F401  (registers `export`)
from featherface import cli_pipeline  # noqa: E402, F401  (registers `exp run` and `runs`)
from featherface import cli_prune  # noqa: E402, F401  (registers `prune` and `finetune`)
from featherface import cli_registry  # noqa: E402, F401  (registers `promote`)
