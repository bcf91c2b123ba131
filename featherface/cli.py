"""The ``featherface`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import functools
import json
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
