"""`featherface prune` and `featherface finetune` end to end on a tiny prepared set, and
`featherface prune groups`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.prune.groups import LAYER_GROUPS
from tests.helpers import prepared_workspace

TINY = """
data:
  synthetic:
    seed: 3
    num_train: 6
    num_val: 3
    max_image_size: 360
    max_faces: 5
    workers: 1
distill:
  image_size: 96
  batch_size: 3
  epochs: 1
  num_workers: 0
  alpha: 0.0
  bn_recalibration_batches: 1
prune:
  rate: 0.5
  tolerance: 0.05
  channel_multiple: 8
  n_calls: 3
  trial_steps: 1
  trial_images: 3
  image_size: 96
  batch_size: 3
  num_workers: 0
finetune:
  soft_epochs: 1
  epochs: 1
  image_size: 96
  batch_size: 3
  num_workers: 0
  bn_recalibration_batches: 1
tracking:
  experiment: prune-test
"""


@pytest.mark.slow
def test_search_then_finetune(tmp_path, monkeypatch) -> None:
    work = prepared_workspace(tmp_path, monkeypatch, TINY)
    runner = CliRunner()
    result = runner.invoke(app, ["distill"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["prune"])
    assert result.exit_code == 0, result.output

    trials = pd.read_csv(work / "stages/prune/trials.csv")
    assert len(trials) == 3
    assert {f"rate_{name}" for name in LAYER_GROUPS} <= set(trials.columns)
    plan = json.loads((work / "stages/prune/plan.json").read_text())
    student = load_checkpoint(work / "stages/distill/model.pt")
    assert plan["student_params"] == params_total(student)
    assert plan["channel_multiple"] == 8  # finetune reads it from the plan
    assert abs(plan["params"] - plan["target_params"]) <= 0.05 * plan["target_params"]

    result = runner.invoke(app, ["finetune"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((work / "stages/finetune/metrics.json").read_text())
    pruned = load_checkpoint(work / "stages/finetune/model.pt")  # registry rebuild, no pruning code
    assert metrics["params_total"] == params_total(pruned) == plan["params"]
    assert metrics["student_params_total"] == plan["student_params"]
    assert {"ap_easy", "ap_medium", "ap_hard", "params_ratio"} <= set(metrics)
    assert all(trials["seconds"] > 0)

    # Another plan: the soft phase's working files of the old plan are discarded, not resumed.
    soft = work / "stages/finetune/soft"
    before = (soft / "last.pt").stat().st_mtime_ns
    plan["rates"] = {name: rate / 2 for name, rate in plan["rates"].items()}
    (work / "stages/prune/plan.json").write_text(json.dumps(plan))
    assert runner.invoke(app, ["finetune"]).exit_code == 0
    assert (soft / "last.pt").stat().st_mtime_ns != before
    assert json.loads((soft / "run_params.json").read_text())["plan"]["rates"] == plan["rates"]


def test_groups_command_lists_six_groups(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["prune", "groups"])
    assert result.exit_code == 0, result.output
    for name in LAYER_GROUPS:
        assert name in result.output
    assert "parameters of the whole network: 383,670" in result.output


def test_finetune_without_plan_is_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("tracking:\n  enabled: false\n")
    result = CliRunner().invoke(app, ["finetune"])
    assert result.exit_code == 1
    assert "plan.json: pruning plan not found" in result.output


def test_read_plan_channel_multiple(tmp_path) -> None:
    from featherface.errors import FeatherFaceError
    from featherface.prune.soft_pruning import read_plan

    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rates": {"neck": 0.5}}))
    assert read_plan(path)["channel_multiple"] == 1  # a plan from before the key existed
    path.write_text(json.dumps({"rates": {"neck": 0.5}, "channel_multiple": 0}))
    with pytest.raises(FeatherFaceError, match=r"plan\.json: 'channel_multiple' must be"):
        read_plan(path)
