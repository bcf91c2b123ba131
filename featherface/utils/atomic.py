"""Atomic outputs: nothing half-written is left where the next stage reads.

Single files are written to a temporary sibling and renamed (``os.replace`` is atomic on one file
system). A stage's whole output folder is built in a temporary sibling folder and swapped in only
when everything in it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` on a sibling temporary file, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    write_atomically(Path(path), lambda temporary: Path(temporary).write_text(text, "utf-8"))


def save_torch(payload: Any, path: str | Path) -> None:
    """``torch.save(payload)`` to ``path`` through a temporary file in the same folder.

    ``torch.save`` is given an open file, not the temporary file's name: given a name, it names
    the folder inside its zip archive after it, so equal payloads would give different bytes
    (and different DVC hashes) from one run to the next.
    """
    import torch

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            torch.save(payload, stream)

    write_atomically(Path(path), write)


def copy_file(source: str | Path, path: str | Path) -> None:
    """Copy ``source`` to ``path`` through a temporary file in the same folder."""
    write_atomically(Path(path), lambda temporary: shutil.copyfile(source, temporary))


def write_json(path: str | Path, content: Any) -> None:
    """Atomically write ``content`` as indented JSON."""
    write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``final``; on success it replaces ``final``.

    On an exception the temporary folder is deleted and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)
