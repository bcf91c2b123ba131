"""Each DVC stage depends on exactly the featherface code it runs: the files of the import closure
of ``featherface/stages/<stage>.py`` (featherface.utils.imports), no file more or less."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from featherface.utils.imports import closure_files, minimal_paths, package_root, stage_module

REPOSITORY = package_root().parent
INDENT = " " * 6  # the deps lists of dvc.yaml


def _covered(dep: str, file: str) -> bool:
    """Whether the DVC dep path ``dep`` (a file or a folder) covers the file ``file``."""
    return file == dep or file.startswith(dep.rstrip("/") + "/")


def _lines(paths: list[str]) -> str:
    return "\n".join(f"{INDENT}- {path}" for path in paths) or f"{INDENT}(none)"


def _problems(stage: str, deps: list[str], module: str) -> str | None:
    """What is wrong with ``stage``'s featherface deps, ready to paste; ``None`` when right."""
    files = closure_files(module)
    closure = [path.relative_to(REPOSITORY).as_posix() for path in files]
    package = package_root().name
    code_deps = [dep for dep in deps if dep == package or dep.startswith(f"{package}/")]
    missing = minimal_paths(
        path
        for path, relative in zip(files, closure, strict=True)
        if not any(_covered(dep, relative) for dep in code_deps)
    )
    extra = []
    for dep in code_deps:  # a folder dep must hold code of the closure only
        path = REPOSITORY / dep
        inside = [path] if path.is_file() else sorted(path.rglob("*.py"))
        if not inside or not set(inside) <= set(files):
            extra.append(dep)
    if not missing and not extra:
        return None
    return (
        f"stage {stage}: its deps must be the files that {module} imports.\n"
        f"Missing deps:\n{_lines(missing)}\nExtra deps (remove):\n{_lines(extra)}\n"
        f"The featherface deps it needs (scripts/stage_deps.py):\n"
        f"{_lines(minimal_paths(files))}"
    )


def test_stage_deps_are_the_code_each_stage_imports() -> None:
    if not (package_root() / "stages").is_dir():
        pytest.skip("featherface/stages/ does not exist yet: no stage module to check")
    stages: dict[str, Any] = yaml.safe_load((REPOSITORY / "dvc.yaml").read_text())["stages"]
    checked, problems = [], []
    for stage, spec in stages.items():
        module = stage_module(stage, spec.get("cmd", ""))
        if module is None:
            continue
        checked.append(stage)
        found = _problems(stage, [str(dep) for dep in spec.get("deps", [])], module)
        if found:
            problems.append(found)
    assert checked, (
        "featherface/stages/ exists, but no dvc.yaml stage runs `featherface <stage>` with a "
        "module featherface/stages/<stage>.py"
    )
    assert not problems, "\n\n".join(problems)
