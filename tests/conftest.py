"""Shared fixtures: the reference folder, an isolated MLflow store, tiny WIDER folders."""

from __future__ import annotations

import os

# One compute thread per test process: the machines are 2-core and shared, and small convolutions
# slow down many times over when two busy processes each run two threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
import torch

from tests.helpers import IMAGE_SIZES, SPLIT_TEXT, TRAIN_LABELS, reference_root, write_image

torch.set_num_threads(1)


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
