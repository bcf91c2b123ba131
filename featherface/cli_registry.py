"""The registry commands of the ``featherface`` command line: ``promote``.

``promote`` judges a registered version against the current ``champion`` and prints one line on
standard output: ``promoted <name> version <v> to champion: <reason>`` or ``refused <name>
version <v>: <reason>``. Exit status: 0 when promoted, and also when refused (refusing is a normal
outcome of a retraining run), unless ``--strict``, which makes a refusal exit 2; 1 is an error
(missing metrics file, unknown model key, no such registered model or version), printed as one
line on standard error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featherface.cli import app, reports_errors
from featherface.errors import FeatherFaceError

REFUSED_EXIT_CODE = 2


@app.command()
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
    max_params: Annotated[
        int | None,
        typer.Option(help="Parameter budget, upper end (featherface-nano-b: 180000)."),
    ] = None,
    min_params: Annotated[
        int | None,
        typer.Option(help="Parameter budget, lower end (featherface-nano-b: 120000)."),
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
    budget = default_budget(name, minimum=min_params, maximum=max_params)
    decision = promote_version(registry_client(), name, tolerance, budget, version, figures)
    candidate = decision.candidate.version
    if decision.promote:
        typer.echo(f"promoted {name} version {candidate} to {CHAMPION_ALIAS}: {decision.reason}")
        return
    typer.echo(f"refused {name} version {candidate}: {decision.reason}")
    if strict:
        raise typer.Exit(code=REFUSED_EXIT_CODE)
