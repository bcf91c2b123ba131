"""Helpers the tests share: paths, tiny WIDER files and images, a prepared workspace, a Nano-B
with non-trivial statistics. Fixtures live in ``conftest.py``; these are plain functions and
constants, imported as ``from tests.helpers import ...``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_root() -> Path:
    """``$FEATHERFACE_REFERENCE`` or ``../shared/reference`` beside the repository."""
    return Path(os.environ.get("FEATHERFACE_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


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
