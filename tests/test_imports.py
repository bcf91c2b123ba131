"""Static import analysis (featherface.utils.imports) on small fake packages, and the import
cycles of the real package."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from featherface.utils.imports import (
    all_modules,
    closure_files,
    direct_imports,
    import_closure,
    import_cycles,
    minimal_paths,
    module_file,
    module_name,
    package_root,
    stage_module,
)

FAKE: dict[str, str] = {
    "__init__.py": "",
    "sub/__init__.py": "VALUE = 1\n",
    "sub/leaf.py": "import os\nfrom pathlib import Path\n",
    "sub/rel.py": """
        from . import leaf
        from .. import other
        from ..other import thing
        from .leaf import Path
        """,
    "sub/deep/__init__.py": "from .. import leaf\n",
    "uses_sub.py": "from fakepkg.sub import leaf\n",
    "uses_name.py": "from fakepkg.sub import VALUE\n",
    "uses_dotted.py": "import fakepkg.sub.leaf as leaf\n",
    "other.py": "thing = 1\n",
    "lazy.py": """
        def run() -> None:
            from fakepkg import deep_lazy
        """,
    "deep_lazy.py": "import fakepkg.deeper\n",
    "deeper.py": "",
    "typed.py": """
        import typing
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from fakepkg import only_typed
        else:
            from fakepkg import other
        if typing.TYPE_CHECKING:
            import fakepkg.deeper
        """,
    "only_typed.py": "",
    "registry.py": 'MODULES = ("fakepkg.plugin", "fakepkg.tag", "fakepkg.")\n',
    "plugin.py": "from fakepkg import registry\n",
}


def make_package(tmp_path: Path, files: dict[str, str], name: str = "fakepkg") -> Path:
    """A package ``name`` under ``tmp_path`` with ``files`` (relative path: source)."""
    root = tmp_path / name
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return make_package(tmp_path, FAKE)


def test_module_files_and_names(fake: Path) -> None:
    assert module_file("fakepkg", fake) == fake / "__init__.py"
    assert module_file("fakepkg.sub", fake) == fake / "sub" / "__init__.py"
    assert module_file("fakepkg.sub.leaf", fake) == fake / "sub" / "leaf.py"
    for unknown in ("fakepkg.nope", "os", "fakepkg.sub.VALUE"):
        with pytest.raises(ModuleNotFoundError, match=unknown):
            module_file(unknown, fake)
    assert module_name(fake / "sub" / "__init__.py", fake) == "fakepkg.sub"
    assert module_name(fake / "sub" / "leaf.py", fake) == "fakepkg.sub.leaf"
    assert "fakepkg.sub.deep" in all_modules(fake) and "fakepkg" in all_modules(fake)
    assert package_root() == Path(__file__).resolve().parents[1] / "featherface"
    assert module_file("featherface.utils.imports") == package_root() / "utils" / "imports.py"


def test_from_import_of_a_submodule_or_of_a_name(fake: Path) -> None:
    package = {"fakepkg", "fakepkg.sub"}  # the parent packages that run first
    assert direct_imports("fakepkg.uses_sub", fake) == package | {"fakepkg.sub.leaf"}
    assert direct_imports("fakepkg.uses_name", fake) == package
    assert direct_imports("fakepkg.uses_dotted", fake) == package | {"fakepkg.sub.leaf"}
    assert direct_imports("fakepkg.sub.leaf", fake) == set()  # os, pathlib: not the package's


def test_relative_imports(fake: Path) -> None:
    assert direct_imports("fakepkg.sub.rel", fake) == {
        "fakepkg",
        "fakepkg.sub",
        "fakepkg.sub.leaf",
        "fakepkg.other",
    }
    # In a package's __init__, "." is the package itself.
    assert direct_imports("fakepkg.sub.deep", fake) == {
        "fakepkg",
        "fakepkg.sub",
        "fakepkg.sub.leaf",
    }


def test_lazy_imports_inside_functions_are_in_the_closure(fake: Path) -> None:
    assert direct_imports("fakepkg.lazy", fake) == {"fakepkg", "fakepkg.deep_lazy"}
    assert import_closure("fakepkg.lazy", root=fake) == {
        "fakepkg",
        "fakepkg.lazy",
        "fakepkg.deep_lazy",
        "fakepkg.deeper",
    }
    assert closure_files("fakepkg.lazy", root=fake) == sorted(
        fake / name for name in ("__init__.py", "lazy.py", "deep_lazy.py", "deeper.py")
    )


def test_type_checking_imports_are_left_out(fake: Path) -> None:
    assert direct_imports("fakepkg.typed", fake) == {"fakepkg", "fakepkg.other"}
    assert "fakepkg.only_typed" not in import_closure("fakepkg.typed", root=fake)


def test_parent_packages_are_in_the_closure(fake: Path) -> None:
    assert import_closure("fakepkg.sub.leaf", root=fake) == {
        "fakepkg",
        "fakepkg.sub",
        "fakepkg.sub.leaf",
    }
    assert import_closure("fakepkg.uses_sub", "fakepkg.other", root=fake) == {
        "fakepkg",
        "fakepkg.sub",
        "fakepkg.sub.leaf",
        "fakepkg.uses_sub",
        "fakepkg.other",
    }
    with pytest.raises(ModuleNotFoundError, match=r"fakepkg\.nope"):
        import_closure("fakepkg.nope", root=fake)


def test_module_names_in_strings_are_imports_for_the_closure_only(fake: Path) -> None:
    assert direct_imports("fakepkg.registry", fake) == {"fakepkg", "fakepkg.plugin"}
    assert "fakepkg.plugin" in import_closure("fakepkg.registry", root=fake)
    assert import_cycles(root=fake) == []  # registry -> plugin is no top-level import


def test_cycles(tmp_path: Path) -> None:
    root = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import fakepkg.b\n",
            "b.py": "try:\n    from fakepkg import c\nexcept ImportError:\n    pass\n",
            "c.py": "from fakepkg.a import NAME\n",
            "lazy.py": "import fakepkg.a\n",
            "d.py": "def f():\n    import fakepkg.lazy\n",  # lazy -> a, d -> lazy: no cycle
            "self.py": "from fakepkg import self\n",
            # A package importing its module, which imports it by name: a cycle; importing only
            # a sibling module (the parent package implicitly) is none.
            "cyc/__init__.py": "from fakepkg.cyc import mod\nfrom fakepkg.sibling import x\n",
            "cyc/mod.py": "from fakepkg.cyc import VALUE\n",
            "sibling/__init__.py": "from fakepkg.sibling import mod\n",
            "sibling/mod.py": "from fakepkg.sibling import other\n",
            "sibling/other.py": "",
            "typed.py": "import typing\nif typing.TYPE_CHECKING:\n    import fakepkg.d\n",
        },
    )
    cycles = [
        ["fakepkg.a", "fakepkg.b", "fakepkg.c"],
        ["fakepkg.cyc", "fakepkg.cyc.mod"],
        ["fakepkg.self"],
    ]
    assert import_cycles(root=root) == cycles
    assert import_cycles(["fakepkg.lazy"], root) == cycles[:1]  # reached from lazy
    assert import_cycles(["fakepkg.d", "fakepkg.typed", "fakepkg.sibling"], root) == []


def test_minimal_paths_collapse_fully_covered_folders(fake: Path) -> None:
    sub = ["sub/__init__.py", "sub/leaf.py", "sub/rel.py", "sub/deep/__init__.py"]
    files = [fake / name for name in [*sub, "lazy.py", "other.py"]]
    assert minimal_paths(files, fake) == ["fakepkg/lazy.py", "fakepkg/other.py", "fakepkg/sub"]
    assert minimal_paths(files[1:], fake) == [
        "fakepkg/lazy.py",
        "fakepkg/other.py",
        "fakepkg/sub/deep",
        "fakepkg/sub/leaf.py",
        "fakepkg/sub/rel.py",
    ]
    assert minimal_paths(sorted(fake.rglob("*.py")), fake) == ["fakepkg"]
    assert minimal_paths([], fake) == []


def test_stage_module(tmp_path: Path) -> None:
    root = make_package(tmp_path, {"__init__.py": "", "stages/train.py": ""}, "featherface")
    assert stage_module("train", "featherface train --out x", root) == "featherface.stages.train"
    assert stage_module("train", ["featherface train", "echo"], root) == "featherface.stages.train"
    assert stage_module("train", "featherface fit --out x", root) is None
    assert stage_module("prune", "featherface prune search", root) is None  # no module


def test_no_import_cycles_in_featherface() -> None:
    cycles = import_cycles()
    listed = "\n".join(" <-> ".join(cycle) for cycle in cycles)
    assert not cycles, f"module-level import cycles in featherface:\n{listed}"


def test_no_module_imports_a_private_name_of_another() -> None:
    """``from featherface.x import _name`` couples two modules through a detail of one."""
    offenders = []
    for path in sorted(package_root().rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("featherface"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                offenders += [f"{path.name}: {node.module}.{name}" for name in private]
    assert not offenders
