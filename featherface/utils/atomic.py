"""Atomic outputs: nothing half-written is left where the next stage reads.

Single files are written to a temporary sibling and renamed (``os.replace`` is atomic on one file
system). A stage's whole output folder is built in a temporary sibling folder and swapped in only
when everything in it is complete.

Temporary names. Every temporary entry made for a target ``<folder>/<name>`` (the file being
written, the staging folder, the previous output folder while it is swapped out) is
``<folder>/.<name>.<pid>.<random>.tmp``: ``<pid>`` is the writing process's id, ``<random>`` 8
hexadecimal digits. A writer removes its temporary entry on any exception (``KeyboardInterrupt``
included); one that is killed cannot, so before writing ``<name>`` every writer removes the
``.<name>.<pid>.<random>.tmp`` entries whose ``<pid>`` is no running process (``os.kill(pid, 0)``
raises ``ProcessLookupError``). This assumes that the writers of one folder run on one machine
(one PID namespace); on other systems than POSIX nothing is removed. Temporary files left by
earlier versions (``.<name>.<8 characters>.tmp``, without a PID) are not recognised: delete them
by hand.

Permissions. Files are created as ``open(path, "w")`` creates them and folders as ``os.mkdir``
does: ``0o666`` and ``0o777`` less the process's umask (``0o644`` and ``0o755`` under umask
``022``). A file that is replaced gets the new file's mode, not the old one's.

Errors. An ``OSError`` while writing (a full disk, a read-only folder) becomes a
:class:`~featherface.errors.FeatherFaceError` reading ``<target>: could not write (<reason>)``;
the temporary entry is removed and the previous target is left as it was.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featherface.errors import FeatherFaceError

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def temporary_name(target: Path) -> Path:
    """A fresh ``.<name>.<pid>.<random>.tmp`` sibling of ``target`` (not created)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _process_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists; anything uncertain counts as alive."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file or a folder tree, quietly (it may be gone already)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporary entries of ``target`` whose writing process no longer runs (see the
    module docstring); returns them. Best effort: what cannot be removed is left."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    pattern = re.compile(re.escape(f".{target.name}.") + r"(\d+)\.[0-9a-f]{8}\.tmp")
    stale = []
    try:
        with os.scandir(target.parent) as entries:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match and not _process_alive(int(match.group(1))):
                    stale.append(Path(entry.path))
    except OSError:
        return []
    for path in stale:
        _remove(path)
    return stale


def _create_temporary(target: Path, create: Callable[[Path], None]) -> Path:
    """``create(name)`` for a fresh temporary name of ``target`` (a new name on a clash)."""
    for _ in range(100):
        temporary = temporary_name(target)
        try:
            create(temporary)
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary name next to {target}")


def _create_file(path: Path) -> None:
    os.close(os.open(path, _CREATE_FLAGS, 0o666))  # 0o666 less the umask, as open(path, "w")


def _write_error(target: Path, error: OSError, *own: Path | None) -> FeatherFaceError:
    """``<target>: could not write (<reason>)``; the reason names the file it concerns when that
    is neither ``target`` nor one of its temporary entries ``own``."""
    reason = error.strerror or str(error) or type(error).__name__
    ours = {os.fspath(target), *(os.fspath(path) for path in own if path is not None)}
    if error.filename is not None and str(error.filename) not in ours:
        reason = f"{reason}: {error.filename}"
    return FeatherFaceError(f"{target}: could not write ({reason})")


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` on a sibling temporary file, then rename it to ``path``.

    The temporary file exists (empty) when ``write`` is called; on any exception it is removed
    and ``path`` is left as it was; an ``OSError`` becomes a one-line
    :class:`~featherface.errors.FeatherFaceError` (module docstring).
    """
    path = Path(path)
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        temporary = _create_temporary(path, _create_file)
        write(os.fspath(temporary))
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            _remove(temporary)
        if isinstance(error, OSError):
            raise _write_error(path, error, temporary) from error
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

    On an exception the temporary folder is deleted and ``final`` is left as it was. An
    ``OSError`` while making the folder or swapping it in becomes a one-line
    :class:`~featherface.errors.FeatherFaceError`; exceptions of the ``with`` body pass as they
    are.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        staging = _create_temporary(final, os.mkdir)  # 0o777 less the umask
    except OSError as error:
        raise _write_error(final, error) from error
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    retired: Path | None = None
    try:
        if os.path.lexists(final):
            retired = temporary_name(final)
            os.replace(final, retired)
        os.replace(staging, final)
    except BaseException as error:
        if retired is not None and not os.path.lexists(final) and os.path.lexists(retired):
            try:
                os.replace(retired, final)  # the previous output back in place
            except OSError:
                pass  # left as a temporary entry of ``final`` (removed by a later write)
        _remove(staging)
        if isinstance(error, OSError):
            raise _write_error(final, error, staging, retired) from error
        raise
    if retired is not None:
        _remove(retired)
