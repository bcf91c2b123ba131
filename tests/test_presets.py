"""Presets as `dvc exp run -S` overrides, and `featherface exp run`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from featherface.cli import app
from featherface.errors import FeatherFaceError, ParamsError
from featherface.params import Params, build, load_params
from featherface.presets import (
    applied,
    available_presets,
    exp_run_command,
    format_value,
    parse_overrides,
    preset_overrides,
    preset_path,
)
from featherface.tracking import PIPELINE_ENV
from tests.helpers import REPO_ROOT

PRESETS = available_presets(REPO_ROOT)


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with every leaf of ``over`` put in (sections merged, not replaced)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaves(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_leaves(value, name) if isinstance(value, dict) else {name: value})
    return flat


def _preset_params(name: str) -> Params:
    """The parameters of preset ``name``: it merged over params.yaml, then checked."""
    path = REPO_ROOT / "pipelines" / f"{name}.yaml"
    return build(Params, _deep_merge(_yaml(REPO_ROOT / "params.yaml"), _yaml(path)), path)


def test_presets_are_there() -> None:
    assert {"ci-smoke", "paper-widerface"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_over_params_yaml_is_valid_and_changes_every_key(name: str) -> None:
    path = REPO_ROOT / "pipelines" / f"{name}.yaml"
    preset, current = _yaml(path), _yaml(REPO_ROOT / "params.yaml")
    assert isinstance(_preset_params(name), Params)
    now = _leaves(current)
    leaves = _leaves(preset)
    assert leaves
    same = sorted(key for key, value in leaves.items() if key in now and now[key] == value)
    assert not same, f"{path}: keys equal to params.yaml: {same}"
    unknown = sorted(set(leaves) - set(now))
    assert not unknown, f"{path}: keys params.yaml lacks: {unknown}"
    # As `featherface exp run` applies it: one override per key, the same parameters.
    assert preset_overrides(preset, current) == [
        f"{key}={format_value(value)}" for key, value in leaves.items()
    ]
    assert applied(current, preset_overrides(preset, current), path) == _preset_params(name)


def test_overrides_are_the_changed_leaves_in_preset_order() -> None:
    current = {"prune": {"rate": 0.6, "n_calls": 8}, "evaluate": {"scales": [0.5, 1.0]}}
    preset = {
        "prune": {"rate": 0.6, "n_calls": 3},
        "evaluate": {"scales": [1.0]},
        "model": {"backbone_weights": None},
    }
    assert preset_overrides(preset, current) == [
        "prune.n_calls=3",
        "evaluate.scales=[1.0]",
        "model.backbone_weights=null",
    ]
    assert preset_overrides(current, current) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.001, "0.001"), (True, "true"), ("data/widerface", "data/widerface"), ([1, 2], "[1, 2]")],
)
def test_values_in_yaml_flow_style(value: Any, text: str) -> None:
    assert format_value(value) == text
    assert yaml.safe_load(text) == value


def test_bad_overrides_and_presets_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FeatherFaceError, match="expected key=value"):
        parse_overrides(["prune.rate"])
    with pytest.raises(FeatherFaceError, match=r"no preset named 'nope' \(known: ci-smoke"):
        preset_path("nope", REPO_ROOT)
    current = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    with pytest.raises(ParamsError, match=r"-S: unknown key\(s\) \['prune.rat'\]"):
        applied(current, ["prune.rat=0.5"], Path("-S"))
    with pytest.raises(ParamsError, match="rate must be in"):
        applied(current, ["prune.rate=1.5"], Path("-S"))
    assert applied(current, ["prune.rate=0.65"], Path("-S")).prune.rate == 0.65


def test_ci_smoke_preset_shrinks_every_stage() -> None:
    smoke = _preset_params("ci-smoke")
    default = load_params(REPO_ROOT / "params.yaml")
    assert smoke.data.synthetic.num_train < default.data.synthetic.num_train
    for section in ("teacher", "distill", "finetune"):
        assert getattr(smoke, section).epochs <= getattr(default, section).epochs
    assert smoke.prune.n_calls < default.prune.n_calls
    assert smoke.tracking.experiment != default.tracking.experiment


def test_paper_preset_has_the_paper_settings() -> None:
    preset = _preset_params("paper-widerface")
    assert preset.data.source == "widerface"
    assert preset.model.backbone_weights is not None
    for section in (preset.teacher, preset.distill):
        assert (section.image_size, section.batch_size, section.epochs) == (640, 32, 350)
        assert (section.optimizer, section.schedule, section.lr) == ("adamw", "onecycle", 1e-3)


def test_exp_run_prints_and_runs_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv(PIPELINE_ENV, raising=False)
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], env: dict[str, str], check: bool) -> Any:
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    arguments = ["exp", "run", "--preset", "ci-smoke", "-S", "prune.rate=0.5", "--name", "smoke"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 3  # DVC's status is passed on
    ((command, env),) = calls
    start = command.index("exp")
    assert command[start : start + 4] == ["exp", "run", "--name", "smoke"]
    assert "data.synthetic.num_train=16" in command and command[-1] == "prune.rate=0.5"
    assert env[PIPELINE_ENV] and env[PIPELINE_ENV] in result.output
    assert "dvc exp run --name smoke -S data.synthetic.num_train=16" in result.output

    dry = CliRunner().invoke(app, ["exp", "run", "--preset", "ci-smoke", "--dry-run", "--queue"])
    assert dry.exit_code == 0 and dry.output.startswith("dvc exp run --queue -S ")
    assert len(calls) == 1


def test_exp_run_command_shape() -> None:
    assert exp_run_command(["a.b=1"], queue=True, name="x") == [
        "dvc", "exp", "run", "--queue", "--name", "x", "-S", "a.b=1",
    ]  # fmt: skip
