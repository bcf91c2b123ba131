"""Training stages re-run themselves under torchrun when `launch` asks for several processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.engine.launch import torchrun_command
from featherface.errors import FeatherFaceError, ParamsError
from featherface.params import LaunchParams, load_params


def test_one_process_trains_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert torchrun_command(LaunchParams(), "teacher", ["teacher"]) is None


def test_one_node_is_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    command = torchrun_command(LaunchParams(nproc_per_node=4), "teacher", ["teacher", "--out", "x"])
    assert command == [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4", "--nnodes=1",
        "--standalone", "-m", "featherface", "teacher", "--out", "x",
    ]  # fmt: skip
    monkeypatch.setenv("LOCAL_RANK", "0")  # a process torchrun started trains itself
    assert torchrun_command(LaunchParams(nproc_per_node=4), "teacher", ["teacher"]) is None


def test_several_nodes_meet_at_node_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("FEATHERFACE_NODE_RANK", raising=False)
    launch = LaunchParams(nproc_per_node=8, nnodes=2, rdzv_endpoint="node0:29400")
    command = torchrun_command(launch, "distill", ["distill"])
    assert command is not None and "--standalone" not in command
    expected = {"--nnodes=2", "--node_rank=0", "--master_addr=node0", "--master_port=29400"}
    assert expected <= set(command)
    monkeypatch.setenv("FEATHERFACE_NODE_RANK", "1")
    assert "--node_rank=1" in (torchrun_command(launch, "distill", ["distill"]) or [])
    monkeypatch.setenv("FEATHERFACE_NODE_RANK", "2")
    with pytest.raises(FeatherFaceError, match="must be a node rank from 0 to 1, got '2'"):
        torchrun_command(launch, "distill", ["distill"])


def test_several_nodes_need_an_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("launch:\n  nnodes: 2\n")
    with pytest.raises(ParamsError, match="needs rdzv_endpoint as host:port"):
        load_params(path)


def test_train_command_relaunches_under_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    (tmp_path / "params.yaml").write_text("launch:\n  nproc_per_node: 2\n")
    calls: list[list[str]] = []

    def fake_run(command: list[str], check: bool) -> Any:
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    result = CliRunner().invoke(app, ["teacher", "--out", "teacher_out"])
    assert result.exit_code == 0, result.output
    ((command),) = calls
    tail = command[command.index("featherface") :]
    assert tail == [
        "featherface", "teacher", "--params", "params.yaml", "--prepare-dir", "stages/prepare",
        "--out", "teacher_out",
    ]  # fmt: skip
    assert not (tmp_path / "teacher_out").exists()  # this process trained nothing
    for stage in (["distill"], ["finetune"]):
        assert CliRunner().invoke(app, stage).exit_code == 0
    assert [c[c.index("featherface") + 1] for c in calls[1:]] == ["distill", "finetune"]
