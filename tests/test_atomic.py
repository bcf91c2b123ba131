"""Atomic writers: reproducible bytes, and nothing left behind when a write fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from featherface.utils.atomic import save_torch, write_atomically


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
