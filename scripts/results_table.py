"""Print the pipeline's results as a Markdown table, for the README's "Results" section.

Reads the outputs of a complete ``dvc repro`` under ``--stages`` (default ``stages``):

- ``evaluate/metrics.json``: per evaluated model ``params_total``, ``gmacs_640``, ``ap_easy``,
  ``ap_medium``, ``ap_hard``;
- ``export/latency.json``: per exported stem (``model``: the final Nano-B, ``teacher``)
  ``latency_ms_cpu_640`` and ``ratio_to_retinaface_mnet025``, or ``{"skipped": reason}``;
- ``teacher/metrics.json``: ``machine.cpu`` and ``machine.torch_cpu_capability``, the machine
  the training ran on (older outputs lack them).

and prints one row per model, then a line naming the machine and the command. A missing or
malformed file gives one line naming it on stderr and exit status 1.

    python scripts/results_table.py [--stages DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COMMAND = "python scripts/results_table.py"
AP_KEYS: tuple[str, ...] = ("ap_easy", "ap_medium", "ap_hard")
MODEL_KEYS: tuple[str, ...] = ("params_total", "gmacs_640", *AP_KEYS)
# evaluate's model name -> what the row says
LABELS: dict[str, str] = {
    "teacher": "FeatherFace V1 (teacher)",
    "student": "Nano-B, distilled (student)",
    "pruned": "Nano-B, pruned and fine-tuned",
    "onnx": "Nano-B, ONNX (`model.onnx`)",
}
# evaluate's model name -> the stem of its ONNX file in latency.json
LATENCY_STEMS: dict[str, str] = {"teacher": "teacher", "onnx": "model"}


class InputError(Exception):
    """A missing or malformed input file; the message names it."""


def read_json(path: Path) -> Any:
    """The parsed contents of ``path``; :class:`InputError` when missing or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: missing (run the pipeline first: dvc repro)") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: line {error.lineno}: not JSON: {error.msg}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_models(path: Path) -> dict[str, dict[str, float | None]]:
    """``{model: {key: value}}`` of evaluate's ``metrics.json``, checked against
    :data:`MODEL_KEYS` (``gmacs_640`` may be ``null``, as it is for an ONNX file)."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected an object with one entry per model")
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(f"{path}: model {name!r}: expected an object")
        for key in MODEL_KEYS:
            value = entry.get(key)
            if not (_is_number(value) or (value is None and key == "gmacs_640")):
                raise InputError(f"{path}: model {name!r}: {key} missing or not a number")
    return data


def read_latency(path: Path) -> tuple[dict[str, dict[str, float]], str | None]:
    """``({stem: {latency_ms_cpu_640, ratio_to_retinaface_mnet025}}, skipped reason or None)``
    of export's ``latency.json``."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object")
    if "skipped" in data:
        return {}, str(data["skipped"])
    found: dict[str, dict[str, float]] = {}
    for stem in LATENCY_STEMS.values():
        entry = data.get(stem)
        if entry is None:
            continue
        keys = ("latency_ms_cpu_640", "ratio_to_retinaface_mnet025")
        if not isinstance(entry, dict) or not all(_is_number(entry.get(k)) for k in keys):
            raise InputError(f"{path}: {stem!r}: expected numbers {', '.join(keys)}")
        found[stem] = {key: float(entry[key]) for key in keys}
    return found, None


def read_machine(path: Path) -> str | None:
    """The training machine named in the teacher's ``metrics.json``: ``machine.cpu`` and
    ``machine.torch_cpu_capability`` (nested or as dotted keys), or ``None`` when absent."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object")
    nested = data.get("machine")
    machine = nested if isinstance(nested, dict) else {}
    cpu = machine.get("cpu", data.get("machine.cpu"))
    capability = machine.get("torch_cpu_capability", data.get("machine.torch_cpu_capability"))
    if not cpu:
        return None
    return f"{cpu}, torch CPU capability {capability}" if capability else str(cpu)


def _count(value: float | None) -> str:
    return "" if value is None else f"{int(value):,}"


def _fixed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(
    models: dict[str, dict[str, float | None]], latency: dict[str, dict[str, float]]
) -> list[str]:
    """The Markdown table: one row per model, in the order of evaluate's ``metrics.json``."""
    lines = [
        "| model | true parameters | GMACs at 640 | AP easy | AP medium | AP hard "
        "| CPU latency at 640 px, ms (ratio to RetinaFace-mnet0.25) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in models.items():
        params = _count(entry["params_total"])
        if name == "onnx":
            params = f"({params} graph weights)"
        timing = latency.get(LATENCY_STEMS.get(name, ""))
        cell = (
            f"{timing['latency_ms_cpu_640']:.1f} ({timing['ratio_to_retinaface_mnet025']:.2f})"
            if timing
            else ""
        )
        aps = " | ".join(_fixed(entry[key], 3) for key in AP_KEYS)
        lines.append(
            f"| {LABELS.get(name, name)} | {params} | {_fixed(entry['gmacs_640'], 3)} "
            f"| {aps} | {cell} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the table for ``--stages``; 0 on success, 1 (with one line on stderr) on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stages",
        type=Path,
        default=Path("stages"),
        help="folder of the pipeline's outputs (default: stages)",
    )
    args = parser.parse_args(argv)
    try:
        models = read_models(args.stages / "evaluate" / "metrics.json")
        latency, skipped = read_latency(args.stages / "export" / "latency.json")
        machine = read_machine(args.stages / "teacher" / "metrics.json")
    except InputError as error:
        print(f"results_table.py: {error}", file=sys.stderr)
        return 1
    print("\n".join(table(models, latency)))
    print()
    where = f"Machine: {machine}" if machine else "Machine not recorded"
    note = f" Latency skipped: {skipped}." if skipped else ""
    print(f"{where}. Printed by `{COMMAND}`.{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
