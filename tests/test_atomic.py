"""Atomic writers: reproducible bytes, umask modes, nothing left behind when a write fails or
a writer is killed, and one-line errors."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from featherface.errors import FeatherFaceError
from featherface.utils.atomic import (
    copy_file,
    remove_stale_temporaries,
    save_torch,
    staged_dir,
    write_atomically,
    write_json,
    write_text,
)


def test_equal_payloads_give_equal_bytes_wherever_saved(tmp_path: Path) -> None:
    payload = {"arch": "x", "state_dict": {"weight": torch.arange(6.0).reshape(2, 3)}}
    first, second = tmp_path / "a" / "model.pt", tmp_path / "b" / "best.pt"
    save_torch(payload, first)
    save_torch(payload, second)
    assert first.read_bytes() == second.read_bytes()  # same DVC hash for the same weights
    loaded = torch.load(first, weights_only=True)
    assert torch.equal(loaded["state_dict"]["weight"], payload["state_dict"]["weight"])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(temporary: str) -> None:
        Path(temporary).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, broken)
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]


# --- permissions ------------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """``umask(mask)`` sets the process umask for the test; the old one comes back after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def plain_modes(folder: Path) -> tuple[int, int]:
    """The modes ``open(path, "w")`` and ``os.mkdir`` give under the current umask."""
    folder.mkdir()
    with open(folder / "plain.txt", "w"):
        pass
    os.mkdir(folder / "plain")
    return stat.S_IMODE((folder / "plain.txt").stat().st_mode), stat.S_IMODE(
        (folder / "plain").stat().st_mode
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_written_files_and_staged_folders_get_the_modes_of_the_umask(
    tmp_path: Path, umask: Callable[[int], None], mask: int
) -> None:
    umask(mask)
    file_mode, folder_mode = plain_modes(tmp_path / "reference")
    assert (file_mode, folder_mode) == (0o666 & ~mask, 0o777 & ~mask)
    out = tmp_path / "out"
    write_text(out / "a.txt", "a")
    write_json(out / "b.json", {"b": 1})
    save_torch({"c": torch.zeros(2)}, out / "c.pt")
    copy_file(out / "a.txt", out / "d.txt")
    write_atomically(out / "e.bin", lambda temporary: Path(temporary).write_bytes(b"e"))
    with staged_dir(tmp_path / "stage") as staging:
        write_text(staging / "f.txt", "f")
    for name in ("a.txt", "b.json", "c.pt", "d.txt", "e.bin"):
        assert stat.S_IMODE((out / name).stat().st_mode) == file_mode, name
    assert stat.S_IMODE((tmp_path / "stage").stat().st_mode) == folder_mode
    assert stat.S_IMODE((tmp_path / "stage" / "f.txt").stat().st_mode) == file_mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_replaced_file_gets_the_umask_mode_not_the_old_one(
    tmp_path: Path, umask: Callable[[int], None]
) -> None:
    umask(0o022)
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o600)  # as the writers before this fix left it
    write_text(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# --- temporary files --------------------------------------------------------------------------


def temporaries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_the_temporary_name_carries_the_pid_of_the_writer(tmp_path: Path) -> None:
    seen: list[str] = []
    write_atomically(tmp_path / "out.bin", lambda temporary: seen.append(Path(temporary).name))
    with staged_dir(tmp_path / "stage") as staging:
        seen.append(staging.name)
    assert re.fullmatch(rf"\.out\.bin\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", seen[0]), seen
    assert re.fullmatch(rf"\.stage\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", seen[1]), seen
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_any_exception_while_writing_removes_the_temporary_file(
    tmp_path: Path, exception: type[BaseException]
) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def interrupted(temporary: str) -> None:
        Path(temporary).write_bytes(b"half")
        raise exception()

    with pytest.raises(exception):
        write_atomically(target, interrupted)
    with pytest.raises(exception), staged_dir(tmp_path / "stage") as staging:
        write_text(staging / "part.txt", "half")
        raise exception()
    assert target.read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("exception", [KeyboardInterrupt, OSError])
def test_a_failed_swap_keeps_the_previous_folder_and_removes_the_staging_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exception: type[BaseException]
) -> None:
    final = tmp_path / "stage"
    final.mkdir()
    (final / "old.txt").write_text("old")
    real_replace = os.replace
    calls: list[tuple[Any, Any]] = []

    def replace(source: Any, destination: Any) -> None:
        calls.append((source, destination))
        if len(calls) == 2:  # the staging folder onto ``final``
            raise exception(errno.EIO, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    expected = FeatherFaceError if exception is OSError else exception
    with pytest.raises(expected) as caught, staged_dir(final) as staging:
        (staging / "new.txt").write_text("new")
    if exception is OSError:
        assert str(caught.value) == f"{final}: could not write (Input/output error)"
    assert [path.name for path in tmp_path.iterdir()] == ["stage"]
    assert [path.name for path in final.iterdir()] == ["old.txt"]


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(process.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


@pytest.mark.skipif(os.name != "posix", reason="PIDs checked with os.kill(pid, 0)")
def test_a_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    killed = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from featherface.utils.atomic import write_atomically\n"
        "def write(temporary):\n"
        "    Path(temporary).write_bytes(b'x' * 4096)\n"
        "    os.kill(os.getpid(), 9)\n"
        "write_atomically(Path(sys.argv[1]), write)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", killed, str(target)])
    assert process.wait() == -9
    left = temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".last.pt.{process.pid}.")

    save_torch({"weight": torch.ones(2)}, target)
    assert temporaries(tmp_path) == []
    assert torch.equal(torch.load(target, weights_only=True)["weight"], torch.ones(2))


@pytest.mark.skipif(os.name != "posix", reason="PIDs checked with os.kill(pid, 0)")
def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getpid()
    names = {
        "stale_file": f".out.bin.{dead}.0123abcd.tmp",
        "stale_folder": f".stage.{dead}.89abcdef.tmp",
        "live_file": f".out.bin.{alive}.0123abcd.tmp",
        "init_file": ".out.bin.1.0123abcd.tmp",  # pid 1 runs (maybe as another user)
        "other_target": f".out.bin.1.{dead}.0123abcd.tmp",  # of out.bin.1, not of out.bin
        "not_ours": f".out.bin.{dead}.tmp",
    }
    for key, name in names.items():
        if key == "stale_folder":
            (tmp_path / name).mkdir()
            (tmp_path / name / "half.txt").write_text("half")
        else:
            (tmp_path / name).write_bytes(b"half")

    write_text(tmp_path / "out.bin", "new")
    with staged_dir(tmp_path / "stage") as staging:
        write_text(staging / "new.txt", "new")

    kept = {key for key, name in names.items() if (tmp_path / name).exists()}
    assert kept == {"live_file", "init_file", "other_target", "not_ours"}
    assert remove_stale_temporaries(tmp_path / "out.bin") == []


# --- errors while writing ---------------------------------------------------------------------


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("writer", ["write_text", "write_json", "save_torch", "write_atomically"])
def test_a_full_disk_is_a_one_line_error_naming_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    monkeypatch.setattr(Path, "write_text", no_space)
    monkeypatch.setattr(torch, "save", no_space)
    write = {
        "write_text": lambda: write_text(target, "new"),
        "write_json": lambda: write_json(target, {"new": 1}),
        "save_torch": lambda: save_torch({"new": torch.zeros(1)}, target),
        "write_atomically": lambda: write_atomically(target, no_space),
    }[writer]
    with pytest.raises(FeatherFaceError) as caught:
        write()
    assert str(caught.value) == f"{target}: could not write (No space left on device)"
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["model.pt"]


def test_a_failed_copy_names_the_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "best.pt"
    with pytest.raises(FeatherFaceError) as caught:
        copy_file(missing, tmp_path / "model.pt")
    assert str(caught.value) == (
        f"{tmp_path / 'model.pt'}: could not write (No such file or directory: {missing})"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FeatherFaceError, match=r"file[/\\]out\.json: could not write \("):
        write_json(tmp_path / "file" / "out.json", {})
    with pytest.raises(FeatherFaceError, match=r"file[/\\]stage: could not write \("):
        with staged_dir(tmp_path / "file" / "stage"):
            pass
