"""Validation detections stored by a training stage, for the ``evaluate`` stage to reuse.

The ``teacher``, ``distill`` and ``finetune`` stages score their model on the validation split
with the WIDER protocol (their ``metrics.json``). They keep those detections in
``val_detections.npz``, and ``evaluate`` reads them instead of running the same model on the
same images again, but only when the file's key equals the key of the run ``evaluate`` would
make::

    key = (SHA-256 of the model file, SHA-256 of the prepared tables, SHA-256 of the code that
           detects, the inference settings of ``params.evaluate``, the device type)

The code that detects is ``DETECTION_CODE``, ``featherface.evaluate.inference`` and
``featherface.evaluate.runtime``, with every module they import (the models, the
post-processing; :func:`featherface.utils.fingerprint.code_fingerprint`): editing other code,
such as a training loop or the report, keeps the stored detections. ``batch_size`` is left out:
it groups equally sized images and does not change a detection.
Any difference, such as ``evaluate.mode: multiscale``, a retrained model or edited code, and
``evaluate`` detects again. The file holds, in validation order, the image keys
``event/name``, each image's number of faces and the concatenated ``boxes float32[N, 4]``,
``scores float32[N]`` and ``landmarks float32[N, 10]``, so the reused detections are the
tensors the stage computed, bit for bit. It is a plain ``.npz`` (no pickled objects).
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featherface.detection.postprocess import Detections
from featherface.errors import FeatherFaceError
from featherface.params import EvaluateParams
from featherface.utils.atomic import write_atomically
from featherface.utils.fingerprint import code_fingerprint, data_fingerprint, file_sha256

DETECTION_CODE: tuple[str, ...] = ("featherface.evaluate.inference", "featherface.evaluate.runtime")
FILE_NAME = "val_detections.npz"
FORMAT = 1
ARRAYS: tuple[str, ...] = ("key", "images", "counts", "boxes", "scores", "landmarks")
KEY_PARTS: dict[str, str] = {  # the key's fields, as a mismatch is reported
    "format": "file format",
    "model_sha256": "model file",
    "data_sha256": "prepared data",
    "code_sha256": "detection code",
    "evaluate": "evaluate settings",
    "device": "device",
}


def detection_key(
    model_file: Path, prepare_dir: Path, params: EvaluateParams, device: str | torch.device
) -> dict[str, Any]:
    """The key of one model's validation detections (module docstring)."""
    settings = {name: value for name, value in asdict(params).items() if name != "batch_size"}
    return json.loads(  # tuples as lists, as read back
        json.dumps(
            {
                "format": FORMAT,
                "model_sha256": file_sha256(model_file),
                "data_sha256": data_fingerprint(prepare_dir),
                "code_sha256": code_fingerprint(*DETECTION_CODE),
                "evaluate": settings,
                "device": torch.device(device).type,
            }
        )
    )


def save_detections(
    path: Path,
    key: dict[str, Any],
    images: Sequence[tuple[str, str]],
    found: Sequence[Detections],
) -> None:
    """Write ``found`` (one :class:`Detections` per ``(event, name)`` of ``images``) to
    ``path`` atomically."""
    if len(images) != len(found):
        raise ValueError(f"{len(images)} images but {len(found)} detection sets")

    def stacked(field: str, width: int) -> np.ndarray:
        parts = [getattr(d, field).detach().cpu().float().numpy().reshape(-1, width) for d in found]
        return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

    arrays = {
        "key": np.array(json.dumps(key, sort_keys=True)),
        "images": np.array([f"{event}/{name}" for event, name in images]),
        "counts": np.array([len(d.scores) for d in found], dtype=np.int64),
        "boxes": stacked("boxes", 4),
        "scores": stacked("scores", 1).reshape(-1),
        "landmarks": stacked("landmarks", 10),
    }

    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)

    write_atomically(path, write)


def load_detections(
    path: Path, key: dict[str, Any], images: Sequence[tuple[str, str]]
) -> tuple[list[Detections] | None, str]:
    """``(detections, "")`` from ``path`` when its key and image list equal ``key`` and
    ``images``; else ``(None, why)``, ``why`` saying in a few words what differs. A file that is
    not such an archive raises :class:`FeatherFaceError` naming it."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as error:
        raise FeatherFaceError(f"{path}: unreadable detections file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FeatherFaceError(f"{path}: not a detections file (a single array, not an archive)")
    with archive:
        missing = [name for name in ARRAYS if name not in archive.files]
        if missing:
            raise FeatherFaceError(f"{path}: not a detections file (no {', '.join(missing)})")
        try:
            arrays = {name: archive[name] for name in ARRAYS}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise FeatherFaceError(f"{path}: unreadable detections file ({error})") from None
    stored = json.loads(str(arrays["key"]))
    if stored != key:
        differing = [
            described for name, described in KEY_PARTS.items() if key.get(name) != stored.get(name)
        ]
        return None, f"made with another {', '.join(differing)}"
    if list(arrays["images"]) != [f"{event}/{name}" for event, name in images]:
        return None, "made on other validation images"
    counts = arrays["counts"]
    if counts.sum() != len(arrays["scores"]) or any(
        len(arrays[name]) != len(arrays["scores"]) for name in ("boxes", "landmarks")
    ):
        raise FeatherFaceError(f"{path}: face counts do not match the stored arrays")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [
        Detections(
            torch.from_numpy(arrays["boxes"][start:stop].copy()),
            torch.from_numpy(arrays["scores"][start:stop].copy()),
            torch.from_numpy(arrays["landmarks"][start:stop].copy()),
        )
        for start, stop in itertools.pairwise(bounds)
    ], ""
