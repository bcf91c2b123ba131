"""Named parameter presets (``pipelines/<name>.yaml``) turned into ``dvc exp run`` commands.

A preset holds overrides of ``params.yaml``: some of its keys (in its sections, with the same
meaning), normally only those whose value it changes; every other key keeps its ``params.yaml``
value. It is applied as one ``-S key=value`` override per leaf key whose value differs from the
current ``params.yaml``, so the experiment records exactly what the preset changed, and the
resulting parameters are ``params.yaml`` with the preset's values merged in (plus any ``-S`` the
user adds, which come last and win). Lists and ``null`` are written in YAML flow style
(``[0.5, 1.0, 1.5]``), which is how DVC parses an override's value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from featherface.errors import FeatherFaceError
from featherface.params import Params, build, load_params
from featherface.tracking import flatten

PRESETS_FOLDER = Path("pipelines")


def available_presets(root: Path) -> list[str]:
    """Names of the presets in ``root/pipelines``."""
    return sorted(path.stem for path in (root / PRESETS_FOLDER).glob("*.yaml"))


def preset_path(name: str, root: Path) -> Path:
    """``root/pipelines/<name>.yaml``; an unknown name is an error listing the known ones."""
    path = root / PRESETS_FOLDER / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_presets(root)) or "none"
        raise FeatherFaceError(f"{path}: no preset named {name!r} (known: {known})")
    return path


def read_yaml(path: Path) -> dict[str, Any]:
    """A parameter file as plain data, after :func:`featherface.params.load_params` has checked
    it (unknown keys, types and ranges are one-line errors naming the file)."""
    load_params(path)
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def format_value(value: Any) -> str:
    """An override's value as DVC reads it: YAML flow style on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def preset_overrides(preset: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key=value`` for every leaf of ``preset`` that ``current`` lacks or holds differently,
    in the preset's order."""
    now = flatten(current)
    return [
        f"{key}={format_value(value)}"
        for key, value in flatten(preset).items()
        if key not in now or now[key] != value
    ]


def parse_overrides(entries: Iterable[str]) -> list[str]:
    """Check user overrides (``key=value``, key dotted); returns them unchanged."""
    checked = []
    for entry in entries:
        key, sign, _ = entry.partition("=")
        if not sign or not key or " " in key:
            raise FeatherFaceError(f"-S {entry!r}: expected key=value, as in prune.rate=0.6")
        checked.append(entry)
    return checked


def applied(current: Mapping[str, Any], overrides: Sequence[str], source: Path) -> Params:
    """The parameters ``current`` would hold after ``overrides``, checked like ``params.yaml``
    (a typo in a key fails here, before DVC runs anything)."""
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(current))) or {}
    for entry in overrides:
        key, _, text = entry.partition("=")
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FeatherFaceError(f"-S {entry!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(text)
    return build(Params, merged, source)


def exp_run_command(
    overrides: Sequence[str], queue: bool = False, name: str | None = None
) -> list[str]:
    """``dvc exp run [--queue] [--name NAME] -S o1 -S o2 ...``."""
    command = ["dvc", "exp", "run"]
    if queue:
        command.append("--queue")
    if name:
        command += ["--name", name]
    for entry in overrides:
        command += ["-S", entry]
    return command
