"""Which modules of the package a module imports, read with :mod:`ast` (the code never runs).

What counts as an import of module ``m`` (``m`` and the modules it names are in the package):

* ``import pkg.a.b`` imports ``pkg.a.b``;
* ``from pkg.a import b`` imports ``pkg.a.b`` when ``b`` is a module (``pkg/a/b.py`` or
  ``pkg/a/b/__init__.py``), else ``pkg.a``; relative imports (``from . import b``,
  ``from ..a import c``) resolve against ``m``'s package the same way;
* statements anywhere in the file: inside functions (lazy imports), classes, ``try`` and ``if``,
  except the body of ``if TYPE_CHECKING:`` (its ``else`` counts), which never runs;
* a string constant that is exactly the name of a module of the package (``importlib`` imports
  such names at run time, as ``featherface.models.registry`` does): these count for the closure,
  not for cycles;
* importing ``pkg.a.b`` runs ``pkg/__init__.py`` and ``pkg/a/__init__.py`` first, so those
  parent packages are imported too (a folder without ``__init__.py`` has no code and no module).

Names outside the package, and names that are no module file of it, are left out. Import cycles
(:func:`import_cycles`) use only the imports that run when ``m`` itself is imported: top-level
statements (in top-level ``try``/``if``/classes too, not in functions) without the implied
parent packages. Every function takes ``root``, the package folder (default: ``featherface``);
the package's name is that folder's name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


def package_root() -> Path:
    """The ``featherface`` package folder."""
    return Path(__file__).resolve().parents[1]


def _root(root: Path | None) -> Path:
    return package_root() if root is None else root


def _path(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under ``root``, or ``None`` when there is none."""
    head, *parts = name.split(".")
    if head != root.name or not all(part.isidentifier() for part in parts):
        return None
    base = root.joinpath(*parts)
    candidates = [base / "__init__.py", *([base.with_suffix(".py")] if parts else [])]
    return next((path for path in candidates if path.is_file()), None)


def module_file(name: str, root: Path | None = None) -> Path:
    """The file of the dotted module ``name`` (``x.py`` or ``x/__init__.py``); raises
    :class:`ModuleNotFoundError` when the package has no such module."""
    path = _path(name, _root(root))
    if path is None:
        raise ModuleNotFoundError(f"no module {name} in {_root(root)}", name=name)
    return path


def module_name(path: Path, root: Path | None = None) -> str:
    """The dotted name of the module file ``path`` of the package."""
    root = _root(root)
    parts = path.resolve().relative_to(root.resolve()).with_suffix("").parts
    return ".".join((root.name, *parts[: -1 if parts[-1] == "__init__" else None]))


def all_modules(root: Path | None = None) -> list[str]:
    """Every module of the package (every ``.py`` file under ``root``), sorted."""
    root = _root(root)
    return sorted(module_name(path, root) for path in root.rglob("*.py"))


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


Statement = ast.Import | ast.ImportFrom | ast.Constant


def _import_nodes(nodes: Iterable[ast.AST], top_level: bool) -> Iterator[Statement]:
    """The import statements (and, unless ``top_level``, the constants) in or under ``nodes``
    that may run (see the module docstring)."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom) or (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and not top_level
        ):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, top_level)
        elif not (top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)):
            yield from _import_nodes(ast.iter_child_nodes(node), top_level)


def _imported(node: Statement, name: str, root: Path) -> Iterator[str]:
    """The modules that one statement (or string) of module ``name`` names, existing or not."""
    if isinstance(node, ast.Constant):
        yield node.value
        return
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = name.split(".")
        if module_file(name, root).name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, *([node.module] if node.module else [])])
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if _path(submodule, root) is not None else base


def _parents(name: str, root: Path) -> Iterator[str]:
    """``name``'s parent packages that have an ``__init__.py``, outermost first."""
    parts = name.split(".")
    for end in range(1, len(parts)):
        parent = ".".join(parts[:end])
        if _path(parent, root) is not None:
            yield parent


def _imports(name: str, root: Path, top_level: bool) -> set[str]:
    path = module_file(name, root)
    tree = ast.parse(path.read_bytes(), filename=str(path))
    return {
        imported
        for node in _import_nodes([tree], top_level)
        for imported in _imported(node, name, root)
        if _path(imported, root) is not None
    }


def direct_imports(name: str, root: Path | None = None) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its file, with their parent
    packages (module docstring); ``name`` itself only if it imports itself."""
    root = _root(root)
    found = _imports(name, root, top_level=False)
    return found | {parent for imported in found for parent in _parents(imported, root)}


def _walk(pending: list[str], neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    """``pending`` and every node reachable from them through ``neighbours``."""
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(set(neighbours(node)) - seen)
    return seen


def import_closure(*names: str, root: Path | None = None) -> set[str]:
    """``names``, their parent packages and every module they import, directly or not: all the
    package's code that importing and running ``names`` may execute."""
    root = _root(root)
    for name in names:
        module_file(name, root)  # an unknown starting module is an error, not an empty closure
    parents = [parent for name in names for parent in _parents(name, root)]
    return _walk([*names, *parents], lambda name: direct_imports(name, root))


def closure_files(*names: str, root: Path | None = None) -> list[Path]:
    """The files of :func:`import_closure` of ``names``, sorted."""
    root = _root(root)
    return sorted(module_file(name, root) for name in import_closure(*names, root=root))


def import_cycles(
    modules: Iterable[str] | None = None, root: Path | None = None
) -> list[list[str]]:
    """The import cycles among ``modules`` (default: all) and the modules they import at top
    level: each is a strongly connected component of the top-level import graph (its modules,
    sorted; a module importing itself is one), in sorted order."""
    root = _root(root)
    edges: dict[str, set[str]] = {}

    def top_level_imports(name: str) -> set[str]:
        edges[name] = _imports(name, root, top_level=True)
        return edges[name]

    _walk(list(all_modules(root) if modules is None else modules), top_level_imports)
    reach = {name: _walk(list(edges[name]), edges.__getitem__) for name in edges}
    cycles = {
        tuple(sorted(other for other in reach[name] if name in reach[other]))
        for name in edges
        if name in reach[name]
    }
    return sorted(list(cycle) for cycle in cycles)


def minimal_paths(files: Iterable[Path], root: Path | None = None) -> list[str]:
    """``files`` (under ``root``) as the fewest DVC dep paths, relative to ``root``'s parent (the
    repository): a folder stands for its files when ``files`` hold every ``.py`` file beneath it,
    recursively; else its files and subfolders are listed. Sorted."""
    root = _root(root).resolve()
    wanted = {path.resolve() for path in files}

    def paths(folder: Path) -> list[Path]:
        if all(path in wanted for path in folder.rglob("*.py")):
            return [folder]
        children = sorted(folder.iterdir())
        found = [path for path in children if path in wanted]
        return found + [
            path
            for child in children
            if child.is_dir() and any(f.is_relative_to(child) for f in wanted)
            for path in paths(child)
        ]

    if not wanted:
        return []
    return sorted(path.relative_to(root.parent).as_posix() for path in paths(root))


def stage_module(stage: str, cmd: str | list[str], root: Path | None = None) -> str | None:
    """``<package>.stages.<stage>`` when the DVC stage's ``cmd`` runs ``<package> <stage>`` and
    that module exists (the stage's code); else ``None``."""
    root = _root(root)
    command = (cmd[0] if isinstance(cmd, list) and cmd else str(cmd)).split()
    name = f"{root.name}.stages.{stage}"
    if command[:2] != [root.name, stage] or _path(name, root) is None:
        return None
    return name
