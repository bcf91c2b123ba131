"""Shared fixtures: the reference folder, an isolated MLflow store, tiny WIDER folders."""

from __future__ import annotations

import os

# One compute thread per test process: the machines are 2-core and shared, and small convolutions
# slow down many times over when two busy processes each run two threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_root() -> Path:
    """``$FEATHERFACE_REFERENCE`` or ``../shared/reference`` beside the repository."""
    return Path(os.environ.get("FEATHERFACE_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture
def reference() -> Path:
    root = reference_root()
    if not (root / "expected.json").is_file():
        pytest.skip(f"reference folder {root} is absent (it lives beside the repository in CI)")
    return root


@pytest.fixture(autouse=True)
def isolated_mlflow(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Point MLflow at a throw-away sqlite store so tests never touch the repository's."""
    store = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "False")
    return uri


def write_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A small random JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)


SPLIT_TEXT = {
    "train": (
        "0--Parade/0_Parade_a.jpg\n2\n"
        "10 12 30 40 0 0 0 0 0 0 \n"
        "50 20 20 25 1 0 0 0 1 0 \n"
        "1--Handshaking/1_Handshaking_b.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
    ),
    "val": (
        "0--Parade/0_Parade_c.jpg\n3\n"
        "5 5 40 50 0 0 0 0 0 0 \n"
        "60 10 12 14 2 0 0 0 0 0 \n"
        "70 40 8 8 2 0 0 1 2 0 \n"
    ),
}
IMAGE_SIZES = {
    "train": {
        "0--Parade/0_Parade_a.jpg": (120, 90),
        "1--Handshaking/1_Handshaking_b.jpg": (64, 48),
    },
    "val": {"0--Parade/0_Parade_c.jpg": (100, 80)},
}
TRAIN_LABELS = (
    "# 0--Parade/0_Parade_a.jpg\n"
    "10 12 30 40 18.0 25.0 0.0 32.0 25.0 0.0 25.0 33.0 0.0 19.0 42.0 0.0 31.0 42.0 0.0 0.9\n"
    "50 20 20 25 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0\n"
    "# 1--Handshaking/1_Handshaking_b.jpg\n"
)


@pytest.fixture
def wider_folder(tmp_path: Path) -> Path:
    """A hand-written WIDER-layout folder: 2 train images (3 faces), 1 val image (3 faces)."""
    root = tmp_path / "wider"
    for split, text in SPLIT_TEXT.items():
        split_file = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text(text)
        for index, (name, (width, height)) in enumerate(IMAGE_SIZES[split].items()):
            write_image(root / f"WIDER_{split}" / "images" / name, width, height, seed=index)
    label = root / "retinaface_gt" / "train" / "label.txt"
    label.parent.mkdir(parents=True)
    label.write_text(TRAIN_LABELS)
    return root


def prepared_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params_text: str) -> Path:
    """``tmp_path`` as the working folder with ``params.yaml`` = ``params_text`` and the
    ``prepare`` stage run (for the training-stage tests)."""
    from typer.testing import CliRunner

    from featherface.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params_text)
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output
    return tmp_path


def randomised_nano_b() -> torch.nn.Module:
    """Nano-B in eval mode with non-trivial BatchNorm statistics and affine terms (seed 0), so
    that pruning and export tests see every kind of parameter at work."""
    from featherface.models import build_model

    torch.manual_seed(0)
    model = build_model("featherface-nano-b").eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.1)
    return model
