"""A training stage's validation detections stand in for running its model in `evaluate`, only
when they come from the same model file, data, code and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import featherface.evaluate.scoring as stage_module
import featherface.evaluate.stored_detections as stored_module
from featherface.cli import app
from featherface.detection.postprocess import Detections
from featherface.errors import FeatherFaceError
from featherface.evaluate.scoring import validation_ap
from featherface.evaluate.stored_detections import (
    DETECTION_CODE,
    FILE_NAME,
    detection_key,
    load_detections,
    save_detections,
)
from featherface.models import build_model
from featherface.models.checkpoint import save_checkpoint
from featherface.params import EvaluateParams
from featherface.utils.fingerprint import code_fingerprint
from featherface.utils.imports import import_closure
from tests.test_cli import TINY_PARAMS

PREPARE = Path("stages/prepare")
MODEL = Path("stages/x/model.pt")
STORED = MODEL.parent / FILE_NAME


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prepared tiny set and an untrained RetinaFace whose training stage kept its detections."""
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(TINY_PARAMS)
    assert CliRunner().invoke(app, ["prepare"]).exit_code == 0
    torch.manual_seed(0)
    model = build_model("retinaface-mnet025").eval()
    save_checkpoint(MODEL, "retinaface-mnet025", model)
    aps = validation_ap(model, PREPARE, "cpu", MODEL)
    (tmp_path / "stage_aps.json").write_text(json.dumps(aps))
    return tmp_path


def _evaluate(*extra: str) -> tuple[str, dict]:
    result = CliRunner().invoke(app, ["evaluate", "--model", f"x={MODEL}", *extra])
    assert result.exit_code == 0, result.output
    metrics = json.loads(Path("stages/evaluate/metrics.json").read_text())["x"]
    return " ".join(result.output.split()), metrics


def _no_detection(*args: object, **kwargs: object) -> None:
    raise AssertionError("the model ran although its stored detections match")


def test_matching_detections_are_reused_and_score_the_same(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detected_output, detected = _evaluate()  # --model without --stored: the model runs
    assert "reused" not in detected_output
    stage_aps = json.loads((workspace / "stage_aps.json").read_text())
    assert {name: detected[name] for name in stage_aps} == stage_aps

    monkeypatch.setattr(stage_module, "detect_split", _no_detection)
    output, reused = _evaluate("--stored", f"x={STORED}")
    assert f"{MODEL}: detections of {STORED} reused" in output
    assert reused == detected
    prediction_files = sorted(Path("stages/evaluate/predictions/x").rglob("*.txt"))
    assert len(prediction_files) == 4


def test_other_settings_or_model_run_the_model_again(workspace: Path) -> None:
    params = Path("params.yaml")
    params.write_text(params.read_text() + "\nevaluate:\n  score_threshold: 0.5\n")
    output, _ = _evaluate("--stored", f"x={STORED}")
    assert "not reused: made with another evaluate settings" in output

    params.write_text(TINY_PARAMS)
    torch.manual_seed(1)
    save_checkpoint(MODEL, "retinaface-mnet025", build_model("retinaface-mnet025"))
    output, _ = _evaluate("--stored", f"x={STORED}")
    assert "not reused: made with another model file" in output


def test_stored_arguments_and_damaged_files_are_clear_errors(workspace: Path) -> None:
    runner = CliRunner()
    base = ["evaluate", "--model", f"x={MODEL}"]
    unknown = runner.invoke(app, [*base, "--stored", f"y={STORED}"])
    assert unknown.exit_code == 1 and "stored detections for y, which is not a model" in (
        " ".join(unknown.output.split())
    )
    missing = runner.invoke(app, [*base, "--stored", "x=nope.npz"])
    assert missing.exit_code == 1 and "nope.npz: stored detections file not found" in missing.output
    STORED.write_bytes(b"not an archive")
    damaged = runner.invoke(app, [*base, "--stored", f"x={STORED}"])
    assert damaged.exit_code == 1
    assert f"{STORED}: unreadable detections file" in " ".join(damaged.output.split())


def test_round_trip_is_exact_and_checks_the_image_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare = tmp_path / "prepare"
    prepare.mkdir()
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    key = detection_key(model, prepare, EvaluateParams(), "cpu")
    images = [("0--a", "one"), ("0--a", "two"), ("1--b", "three")]
    torch.manual_seed(0)
    found = [
        Detections(torch.rand(3, 4) * 100, torch.rand(3), torch.rand(3, 10)),
        Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10)),
        Detections(torch.rand(1, 4), torch.rand(1), torch.rand(1, 10)),
    ]
    path = tmp_path / FILE_NAME
    save_detections(path, key, images, found)
    loaded, why = load_detections(path, key, images)
    assert why == "" and loaded is not None and len(loaded) == 3
    for original, read in zip(found, loaded, strict=True):
        for field in ("boxes", "scores", "landmarks"):
            assert torch.equal(getattr(original, field), getattr(read, field))

    assert load_detections(path, key, images[:2]) == (None, "made on other validation images")
    other_batch = detection_key(model, prepare, EvaluateParams(batch_size=1), "cpu")
    assert load_detections(path, other_batch, images)[0] is not None  # batching changes nothing
    other_mode = detection_key(model, prepare, EvaluateParams(mode="resize"), "cpu")
    assert load_detections(path, other_mode, images)[1] == "made with another evaluate settings"
    monkeypatch.setattr(stored_module, "code_fingerprint", lambda *modules: "edited code")
    edited = detection_key(model, prepare, EvaluateParams(), "cpu")
    assert load_detections(path, edited, images)[1] == "made with another detection code"
    with pytest.raises(ValueError, match="3 images but 2 detection sets"):
        save_detections(path, key, images, found[:2])
    (tmp_path / "plain.npz").write_bytes(b"")
    with pytest.raises(FeatherFaceError, match=r"plain\.npz: unreadable detections file"):
        load_detections(tmp_path / "plain.npz", key, images)


def test_without_model_options_the_pipeline_files_are_reused(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = Path("stages/teacher")
    teacher.mkdir(parents=True)
    for name in (MODEL.name, STORED.name):
        (teacher / name).write_bytes((MODEL.parent / name).read_bytes())
    monkeypatch.setattr(stage_module, "detect_split", _no_detection)
    result = CliRunner().invoke(app, ["evaluate"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert f"{teacher / MODEL.name}: detections of {teacher / STORED.name} reused" in printed
    metrics = json.loads(Path("stages/evaluate/metrics.json").read_text())
    stage_aps = json.loads((workspace / "stage_aps.json").read_text())
    assert {name: metrics["teacher"][name] for name in stage_aps} == stage_aps


def test_the_key_covers_the_code_that_detects_and_not_training(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    key = detection_key(model, tmp_path, EvaluateParams(), "cpu")
    assert key["code_sha256"] == code_fingerprint(*DETECTION_CODE)
    code = import_closure(*DETECTION_CODE)
    # The model architectures, which the registry imports by name, are part of it.
    assert {"featherface.detection", "featherface.models.registry"} <= code
    assert any(name.startswith("featherface.models.") and "retinaface" in name for name in code)
    training = [
        name for name in code if name.startswith(("featherface.engine", "featherface.stages"))
    ]
    assert training == [], "detection code imports training code; the key would change with it"
