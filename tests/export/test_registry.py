"""The model registry: the pure promotion rule, then registration and `featherface promote`
against a throw-away sqlite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.errors import FeatherFaceError
from featherface.export.promotion import (
    ModelRecord,
    ParamBudget,
    decide_promotion,
    default_budget,
    plan_budget,
    read_candidate_metrics,
)

NAME = "featherface-nano-b"
NANO_BUDGET = ParamBudget(minimum=120_000, maximum=180_000)


# --- the pure rule -------------------------------------------------------------------------


def test_first_candidate_within_budget_is_promoted() -> None:
    decision = decide_promotion(ModelRecord("1", 0.2, 150_000), None, 0.01, NANO_BUDGET)
    assert decision.promote
    assert decision.reason == (
        "no champion yet; hard AP 0.2000; 150,000 parameters (120,000-180,000)"
    )


def test_candidate_within_tolerance_is_promoted() -> None:
    champion = ModelRecord("1", 0.200, 150_000)
    decision = decide_promotion(ModelRecord("2", 0.191, 140_000), champion, 0.01, NANO_BUDGET)
    assert decision.promote
    assert "vs champion version 1's 0.2000 (tolerance 0.0100)" in decision.reason
    previous = ModelRecord("1", 0.2, 1)
    exact = decide_promotion(ModelRecord("3", 0.19, 140_000), previous, 0.01, ParamBudget())
    assert exact.promote, "a drop of exactly the tolerance is allowed"


def test_drop_beyond_tolerance_is_refused_with_the_reason() -> None:
    champion = ModelRecord("4", 0.25, 150_000)
    decision = decide_promotion(ModelRecord("5", 0.2, 150_000), champion, 0.01, NANO_BUDGET)
    assert not decision.promote
    assert decision.reason == (
        "hard AP 0.2000 is 0.0500 below champion version 4's 0.2500 (tolerance 0.0100)"
    )


def test_budget_is_checked_on_both_sides_and_every_failure_named() -> None:
    over = decide_promotion(ModelRecord("1", 0.3, 383_670), None, 0.01, NANO_BUDGET)
    assert not over.promote
    assert over.reason == "383,670 parameters exceed the budget (120,000-180,000)"
    under = decide_promotion(ModelRecord("1", 0.3, 90_000), None, 0.01, NANO_BUDGET)
    assert under.reason == "90,000 parameters fall below the budget (120,000-180,000)"
    both = decide_promotion(
        ModelRecord("2", 0.1, 200_000), ModelRecord("1", 0.3, 150_000), 0.01, NANO_BUDGET
    )
    assert both.reason.count("; ") == 1 and "below champion" in both.reason


def write_plan(path: Path, target: int = 150_000, tolerance: float = 0.2) -> Path:
    """A pruning plan whose band is ``target`` within ``tolerance``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rates": {}, "target_params": target, "tolerance": tolerance}))
    return path


def test_budgets_come_from_the_pruning_plan(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan.json")
    assert default_budget(NAME, plan) == NANO_BUDGET
    # the default pipeline's band: 153,468 within 3% is 148,863.96 to 158,072.04
    assert plan_budget(write_plan(tmp_path / "p.json", 153_468, 0.03)) == ParamBudget(
        148_864, 158_072
    )
    assert default_budget("featherface-v1") == ParamBudget()
    assert default_budget(NAME, plan, maximum=170_000) == ParamBudget(120_000, 170_000)
    assert default_budget(NAME, None, 1, 2) == ParamBudget(1, 2)
    with pytest.raises(FeatherFaceError, match="no pruning plan"):
        default_budget(NAME, tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FeatherFaceError, match=r"bad\.json: needs numbers"):
        plan_budget(tmp_path / "bad.json")


def test_bad_settings() -> None:
    assert ParamBudget().violation(10**9) is None
    with pytest.raises(FeatherFaceError, match="minimum 5 exceeds maximum 4"):
        ParamBudget(5, 4)
    with pytest.raises(FeatherFaceError, match="tolerance"):
        decide_promotion(ModelRecord("1", 0.2, 1), None, -0.1, ParamBudget())


def test_candidate_metrics_are_read_from_the_evaluate_layout(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"pruned": {"ap_hard": 0.015, "params_total": 151269}}))
    assert read_candidate_metrics(path, "pruned") == (0.015, 151269)
    with pytest.raises(FeatherFaceError, match=r"no model 'onnx'; the file has \['pruned'\]"):
        read_candidate_metrics(path, "onnx")
    path.write_text(json.dumps({"pruned": {"ap_hard": None, "params_total": 1}}))
    with pytest.raises(FeatherFaceError, match="pruned: ap_hard must be a finite number"):
        read_candidate_metrics(path, "pruned")


# --- registration and `featherface promote` on a sqlite store --------------------------------


def _tiny_onnx(path: Path, scale: float) -> None:
    """A one-node graph ``image * scale`` with a dynamic batch and image size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([scale], dtype=np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "scale"], ["loc"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("loc", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite MLflow store (tables created) and a tiny Nano-B checkpoint for this module:
    creating the tables takes seconds."""
    from mlflow import MlflowClient

    from featherface.models import build_model
    from featherface.models.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("registry")
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    save_checkpoint(folder / "model.pt", NAME, build_model(NAME, neck_channels=16))
    return folder


@pytest.fixture
def store(shared_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module's store as ``MLFLOW_TRACKING_URI`` and working folder."""
    monkeypatch.chdir(shared_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared_store / 'mlflow.db'}")
    return shared_store


def _register(folder: Path, scale: float) -> str:
    from featherface.export.registry import register_version
    from featherface.tracking import stage_run

    _tiny_onnx(folder / "model.onnx", scale)
    with stage_run("export", {"export": {"scale": scale}}, "registry-test"):
        return register_version(NAME, folder / "model.onnx", folder / "model.pt")


def _promote(folder: Path, ap_hard: float, params: int = 150_000, *extra: str):
    write_plan(folder / "stages" / "prune" / "plan.json")  # the default --plan
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps({"pruned": {"ap_hard": ap_hard, "params_total": params}}))
    return CliRunner().invoke(app, ["promote", "--name", NAME, "--metrics", str(metrics), *extra])


def _champion(folder: Path) -> str:
    from featherface.export.registry import champion_version, registry_client

    return str(champion_version(registry_client(), NAME).version)


def _check_first_version(folder: Path) -> None:
    """Version 1's tags, its ONNX model and its PyTorch checkpoint, read back from the store."""
    import mlflow.onnx

    from featherface.export.registry import load_registered_checkpoint, registry_client
    from featherface.models.checkpoint import load_checkpoint
    from featherface.models.complexity import params_total

    client = registry_client()
    version = client.get_model_version(NAME, "1")
    expected = params_total(load_checkpoint(folder / "model.pt"))
    assert version.tags["featherface.arch"] == NAME
    assert version.tags["params_total"] == str(expected)
    assert version.run_id
    graph = mlflow.onnx.load_model(f"models:/{NAME}/1")
    assert [value.name for value in graph.graph.input] == ["image"]
    assert params_total(load_registered_checkpoint(client, NAME, "1")) == expected


def test_register_and_promote_move_the_alias_to_the_right_version(store: Path) -> None:
    from featherface.export.registry import load_registered_checkpoint, registry_client

    assert _register(store, 1.0) == "1"
    _check_first_version(store)
    no_plan = CliRunner().invoke(app, ["promote", "--name", NAME, "--plan", "absent.json"])
    assert no_plan.exit_code == 1 and "no pruning plan (absent.json)" in no_plan.output
    write_plan(store / "stages" / "prune" / "plan.json")
    no_tags = CliRunner().invoke(app, ["promote", "--name", NAME])
    assert no_tags.exit_code == 1 and "has no ap_hard tag" in no_tags.output, no_tags.output
    first = _promote(store, 0.20)
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"promoted {NAME} version 1 to champion: no champion yet")
    assert _champion(store) == "1"

    _register(store, 2.0)
    worse = _promote(store, 0.15)
    assert worse.exit_code == 0, worse.output
    assert worse.output.strip() == (
        f"refused {NAME} version 2: hard AP 0.1500 is 0.0500 below champion version 1's "
        "0.2000 (tolerance 0.0100)"
    )
    assert _champion(store) == "1"
    strict = _promote(store, 0.20, 400_000, "--version", "2", "--strict")
    assert strict.exit_code == 2
    assert "400,000 parameters exceed the budget (120,000-180,000)" in strict.output

    _register(store, 3.0)
    better = _promote(store, 0.25)
    assert better.exit_code == 0 and "version 3 to champion" in better.output, better.output
    assert _champion(store) == "3"
    client = registry_client()
    assert client.get_model_version(NAME, "2").tags["featherface.promotion"] == "refused"
    assert client.get_model_version(NAME, "3").tags["ap_hard"] == "0.25"
    assert load_registered_checkpoint(client, NAME) is not None
    from_tags = CliRunner().invoke(app, ["promote", "--name", NAME, "--version", "1"])
    assert from_tags.exit_code == 0 and "refused" in from_tags.output, from_tags.output


def test_promote_errors_are_one_line(store: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["promote", "--name", NAME, "--metrics", "nope.json"])
    assert missing.exit_code == 1
    assert "nope.json: metrics file not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    unknown = _promote(store, 0.2, 150_000, "--model-key", "student")
    assert unknown.exit_code == 1
    assert "no model 'student'" in unknown.output and "Traceback" not in unknown.output
    no_model = runner.invoke(app, ["promote", "--name", "featherface-v1"])
    assert no_model.exit_code == 1
    assert "no registered model 'featherface-v1'" in no_model.output
