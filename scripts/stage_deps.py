"""Print, or write into dvc.yaml, the featherface code deps of each stage.

    python scripts/stage_deps.py [dvc.yaml]            print them, ready to paste
    python scripts/stage_deps.py --write [dvc.yaml]    replace them in dvc.yaml

A stage run as ``featherface <stage>`` with a module ``featherface/stages/<stage>.py`` depends
on the files of that module's import closure (featherface.utils.imports), written as the fewest
paths: a folder when the closure holds every ``.py`` file beneath it. The stage's other deps (data,
upstream outputs) are kept as they are. tests/test_dag.py checks that dvc.yaml lists exactly
these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from featherface.utils.imports import closure_files, minimal_paths, stage_module

DEP_INDENT = "      - "


def code_deps(dvc_yaml: Path) -> dict[str, list[str]]:
    """``{stage: featherface/ deps}`` of every stage that has a stage module."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    deps = {}
    for stage, spec in stages.items():
        module = stage_module(stage, spec.get("cmd", ""))
        if module is not None:
            deps[stage] = minimal_paths(closure_files(module))
    return deps


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """``text`` of dvc.yaml with each stage's ``featherface/`` deps replaced by ``deps[stage]``
    (written first in its ``deps:`` list); every other line is kept."""
    lines, stage, in_deps = [], None, False
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage, in_deps = line.strip().rstrip(":"), False
        if in_deps and not line.startswith(DEP_INDENT):
            in_deps = False
        if in_deps and line.startswith(DEP_INDENT + "featherface/"):
            continue
        lines.append(line)
        if line.strip() == "deps:" and stage in deps:
            in_deps = True
            lines.extend(DEP_INDENT + path for path in deps[stage])
    return "\n".join(lines) + "\n"


def main(arguments: list[str]) -> None:
    write = "--write" in arguments
    paths = [argument for argument in arguments if argument != "--write"]
    dvc_yaml = Path(paths[0] if paths else "dvc.yaml")
    deps = code_deps(dvc_yaml)
    if write:
        dvc_yaml.write_text(rewrite(dvc_yaml.read_text(), deps))
        print(f"{dvc_yaml}: featherface deps of {', '.join(deps)} rewritten")
        return
    for stage, paths_of_stage in deps.items():
        print(f"# {stage}\n    deps:")
        for path in paths_of_stage:
            print(f"{DEP_INDENT}{path}")


if __name__ == "__main__":
    main(sys.argv[1:])
