"""Two-process data-parallel training on CPU (gloo), launched with ``torchrun``: one MLflow run,
one set of files written by rank 0 only, identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from featherface.engine.distributed import (
    DistributedContext,
    barrier,
    current_context,
    init_distributed,
    is_main_process,
    unwrap_model,
    wrap_ddp,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import mlflow
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    import featherface.engine.trainer as trainer_module
    from featherface.engine.callbacks import MetricsLogger
    from featherface.engine.distributed import cleanup, init_distributed
    from featherface.engine.losses import DetectionLoss, MultiBoxLoss
    from featherface.engine.trainer import Trainer
    from featherface.tracking import stage_run
    from tests.engine.test_trainer import RandomFaces, TinyDetector, collate

    def forbidden_write(*args, **kwargs):
        raise AssertionError("a rank other than 0 wrote a file")

    def main(out: Path) -> None:
        context = init_distributed("cpu")
        torch.manual_seed(100 + context.rank)  # different initial weights: DDP must broadcast
        train = RandomFaces(8)
        val = RandomFaces(4, seed=1)
        train_loader = DataLoader(
            train, batch_size=2, sampler=DistributedSampler(train, seed=0), collate_fn=collate
        )
        val_loader = DataLoader(
            val, batch_size=2, sampler=DistributedSampler(val, shuffle=False), collate_fn=collate
        )
        if context.rank != 0:
            trainer_module.atomic_save = forbidden_write
            trainer_module.write_text = forbidden_write
        with stage_run("ddp-test", {"epochs": 2}) as run:  # a no-op tracker on rank 1
            # every rank gets the callback; on rank 1 a log call would open a second run
            log = run.log_metrics if context.rank == 0 else mlflow.log_metrics
            trainer = Trainer(
                TinyDetector(),
                DetectionLoss(MultiBoxLoss()),
                train_loader,
                out / "train",
                val_loader=val_loader,
                epochs=2,
                callbacks=[MetricsLogger(log)],
                seed=0,
                context=context,
            )
            trainer.fit()
        torch.save(trainer.network.state_dict(), out / f"rank{context.rank}.pt")
        cleanup()

    main(Path(sys.argv[1]))
    """
)


def test_single_process_helpers_need_no_process_group() -> None:
    context = init_distributed("cpu")
    assert context == DistributedContext(0, 1, 0, torch.device("cpu"))
    assert current_context("cpu") == context
    assert is_main_process() and not context.is_distributed
    barrier()
    model = torch.nn.Linear(2, 2)
    assert unwrap_model(wrap_ddp(model, context)) is model


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_ddp_logs_once_writes_once_and_agrees(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "DVC_ROOT": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script), str(tmp_path)]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    out = tmp_path / "train"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.csv", "last.pt"]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["rng"]) == 2
    assert len((out / "history.csv").read_text().splitlines()) == 3

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name
        assert torch.equal(value, state["model"][name]), name

    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "train/loss")
    assert sorted(metric.step for metric in history) == [0, 1]


STAGE_PARAMS = """
data:
  synthetic:
    seed: 4
    num_train: 8
    num_val: 2
    max_image_size: 320
    max_faces: 4
    workers: 1
teacher:
  arch: featherface-nano-b
  image_size: 96
  batch_size: 2
  epochs: 1
  num_workers: 0
  bn_recalibration_batches: 1
tracking:
  experiment: ddp-stage
"""


def test_teacher_stage_under_torchrun_writes_and_logs_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from featherface.cli import app

    (tmp_path / "params.yaml").write_text(STAGE_PARAMS)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DVC_ROOT": str(tmp_path)}
    env["OMP_NUM_THREADS"] = "1"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert CliRunner().invoke(app, ["prepare"], env=env).exit_code == 0
    finally:
        os.chdir(cwd)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "--no-python", "featherface", "teacher"]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (result.stdout + result.stderr).count("ap_easy=") == 1  # rank 0 alone reports

    out = tmp_path / "stages" / "teacher"
    assert {"model.pt", "metrics.json", "history.csv", "last.pt"} <= {p.name for p in out.iterdir()}
    assert len(torch.load(out / "last.pt", weights_only=True)["rng"]) == 2

    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["ddp-stage"], output_format="list")
    stages = [run.data.tags["featherface.stage"] for run in runs]
    assert stages.count("teacher") == 1
