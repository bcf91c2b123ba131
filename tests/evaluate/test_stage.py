"""`featherface evaluate` end to end on a tiny prepared set, and `wider-ap` on its files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from featherface.cli import app
from featherface.models import build_model
from featherface.models.checkpoint import save_checkpoint
from tests.test_cli import TINY_PARAMS


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(TINY_PARAMS)
    assert CliRunner().invoke(app, ["prepare"]).exit_code == 0
    torch_model = build_model("retinaface-mnet025")
    save_checkpoint(tmp_path / "retina.pt", "retinaface-mnet025", torch_model)
    return tmp_path


def test_evaluate_writes_metrics_curves_predictions_and_report(workspace: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--model", "retina=retina.pt"])
    assert result.exit_code == 0, result.output
    out = workspace / "stages" / "evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["retina"]) == {
        "ap_easy",
        "ap_medium",
        "ap_hard",
        "params_total",
        "gmacs_640",
    }
    assert metrics["retina"]["params_total"] == 426_608
    # an untrained model; AP is NaN (0/0, as the official code) where a setting keeps no face
    assert 0.0 <= metrics["retina"]["ap_hard"] <= 1.0
    curve = pd.read_csv(out / "pr_hard.csv")
    assert list(curve.columns) == ["model", "threshold", "recall", "precision"]
    assert (out / "pr_curves.png").stat().st_size > 0
    assert "| retina |" in (out / "report.md").read_text()
    files = sorted((out / "predictions" / "retina").rglob("*.txt"))
    assert len(files) == 4  # the tiny set's validation images

    # The files score the same with the stand-alone command as in memory.
    scored = runner.invoke(
        app, ["wider-ap", str(out / "predictions" / "retina"), "--gt", "stages/prepare", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    from_files = json.loads(scored.output.strip().splitlines()[-1])
    for setting in ("easy", "medium", "hard"):
        expected = metrics["retina"][f"ap_{setting}"]
        assert from_files[setting] == pytest.approx(expected, abs=1e-12, nan_ok=True)

    import mlflow

    runs = mlflow.search_runs(experiment_names=["cli-test"], output_format="list")
    nested = [run for run in runs if run.data.tags.get("featherface.model") == "retina"]
    assert nested and nested[0].data.metrics["ap_hard"] == pytest.approx(
        metrics["retina"]["ap_hard"]
    )


def test_evaluate_without_models_is_a_clear_error(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate"])
    assert result.exit_code == 1
    assert "no model to evaluate" in result.output
    missing = CliRunner().invoke(app, ["evaluate", "--model", "x=nope.pt"])
    assert missing.exit_code == 1 and "nope.pt: model file of 'x' not found" in missing.output
