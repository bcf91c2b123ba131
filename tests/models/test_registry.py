"""The registry, a shape test over every registered model, checkpoints, `featherface info`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from featherface.cli import app
from featherface.detection import num_priors
from featherface.detection.priors import PriorConfig
from featherface.errors import FeatherFaceError
from featherface.models import build_model, list_models, register_model
from featherface.models.checkpoint import load_checkpoint, save_checkpoint
from featherface.models.complexity import params_paper, params_total


def test_registry_lists_the_three_detectors() -> None:
    assert list_models() == ["featherface-nano-b", "featherface-v1", "retinaface-mnet025"]


def test_duplicate_name_and_unknown_options_are_errors() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("featherface-v1")(lambda: torch.nn.Identity())
    with pytest.raises(FeatherFaceError, match="unknown model 'featherface-v9'"):
        build_model("featherface-v9")
    with pytest.raises(FeatherFaceError, match=r"takes no option\(s\) \['neck_width'\]"):
        build_model("featherface-nano-b", neck_width=3)


@pytest.mark.parametrize("name", ["featherface-nano-b", "featherface-v1", "retinaface-mnet025"])
@pytest.mark.parametrize("size", [(320, 320), (333, 517)])
def test_every_model_gives_one_prediction_per_prior(name: str, size: tuple[int, int]) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, *size))
    anchors = num_priors(size)
    assert outputs.loc.shape == (1, anchors, 4)
    assert outputs.conf.shape == (1, anchors, 2)
    assert outputs.landm.shape == (1, anchors, 10)


def test_parameter_counts() -> None:
    v1 = build_model("featherface-v1")
    assert (params_total(v1), params_paper(v1)) == (592_371, 488_661)
    retina = build_model("retinaface-mnet025")
    assert (params_total(retina), params_paper(retina)) == (426_608, 426_608)


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    model = build_model("retinaface-mnet025").eval()
    save_checkpoint(tmp_path / "model.pt", "retinaface-mnet025", model)
    again = load_checkpoint(tmp_path / "model.pt").eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(image).loc, again(image).loc)
    with pytest.raises(FeatherFaceError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(FeatherFaceError, match="not a featherface checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_info_json_has_the_documented_keys() -> None:
    result = CliRunner().invoke(app, ["info", "featherface-v1", "--json", "--size", "320"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["params_total"] == 592_371
    assert summary["params_paper"] == 488_661
    assert summary["anchors"] == num_priors((320, 320))
    assert summary["gmacs_320"] > 0
    assert sum(row["params_total"] for row in summary["modules"]) == 592_371
    assert sum(row["gmacs"] for row in summary["modules"]) == pytest.approx(
        summary["gmacs_320"], rel=1e-3
    )


def test_info_table_and_unknown_model() -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["info", "retinaface-mnet025", "--size", "320"])
    assert table.exit_code == 0 and "426,608" in table.output
    unknown = runner.invoke(app, ["info", "nope"])
    assert unknown.exit_code == 1 and "unknown model 'nope'" in unknown.output


def test_info_takes_a_checkpoint_or_an_onnx_file(tmp_path: Path) -> None:
    """The pruned model a user wants to inspect is a file, not a registered name."""
    from featherface.export.onnx_export import export_metadata, raw_graph, save_onnx
    from featherface.params import PostprocessSettings

    model = build_model("featherface-nano-b", neck_channels=16).eval()
    save_checkpoint(tmp_path / "small.pt", "featherface-nano-b", model)
    count = sum(p.numel() for p in model.parameters())
    runner = CliRunner()
    checkpoint = runner.invoke(app, ["info", str(tmp_path / "small.pt"), "--json"])
    assert checkpoint.exit_code == 0, checkpoint.output
    assert json.loads(checkpoint.output)["params_total"] == count
    metadata = export_metadata("featherface-nano-b", count, PriorConfig(), PostprocessSettings())
    save_onnx(raw_graph(model, 19, 64, "native"), tmp_path / "small.onnx", metadata)
    graph = runner.invoke(app, ["info", str(tmp_path / "small.onnx")])
    assert graph.exit_code == 0, graph.output
    assert f"exported from featherface-nano-b: {count:,} parameters" in graph.output
    assert "inputs: images; outputs: loc, conf, landm" in graph.output
    missing = runner.invoke(app, ["info", str(tmp_path / "absent.pt")])
    assert missing.exit_code == 1 and "absent.pt: checkpoint not found" in missing.output


def test_import_weights(reference: Path, tmp_path: Path) -> None:
    source = reference / "weights" / "retinaface_mnet025_reference.pth"
    destination = tmp_path / "retinaface.pt"
    result = CliRunner().invoke(
        app, ["import-weights", "--arch", "retinaface-mnet025", str(source), str(destination)]
    )
    assert result.exit_code == 0, result.output
    assert "426,608 parameters" in result.output
    model = load_checkpoint(destination)
    assert params_total(model) == 426_608


def test_import_weights_rejects_a_wrong_file(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(3)}, tmp_path / "bad.pth")
    result = CliRunner().invoke(
        app, ["import-weights", str(tmp_path / "bad.pth"), str(tmp_path / "o.pt")]
    )
    assert result.exit_code == 1
    assert not (tmp_path / "o.pt").exists()
