"""What every command shows on the terminal: the stderr console, one-line errors, progress bars
and ``NAME=PATH`` options. Shared by the stage modules and the tool commands, so that neither
imports the other."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from featherface.errors import FeatherFaceError

console = Console(stderr=True)

ParamsOption = Annotated[Path, typer.Option("--params", help="Parameter file.")]
PrepareOption = Annotated[Path, typer.Option("--prepare-dir", help="Output of prepare.")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder.")]
StudentOption = Annotated[Path, typer.Option("--student", help="Distilled student checkpoint.")]
TeacherOption = Annotated[Path, typer.Option("--teacher", help="Teacher checkpoint.")]


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


def say(line: str) -> None:
    """Print one line on stderr as it is (no markup highlighting)."""
    console.print(line, highlight=False, soft_wrap=True)


def named_paths(entries: list[str], option: str = "--model") -> dict[str, Path]:
    """``["a=x.pt", "b=y.onnx"]`` -> ``{"a": Path("x.pt"), ...}``; anything else is a one-line
    error naming ``option``."""
    paths = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name or not path:
            raise FeatherFaceError(f"{option} expects NAME=PATH, got {entry!r}")
        paths[name] = Path(path)
    return paths


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """``key=value`` pairs of the numeric metrics, four significant digits."""
    return " ".join(
        f"{key}={value:.4g}"
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    )
