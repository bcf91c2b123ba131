"""This package's checkpoint format: tensors and plain data only, never pickled modules.

A checkpoint is a dict ``{"format": 1, "arch": <registry name>, "config": <builder keyword
arguments>, "state_dict": <tensors>}`` saved with :func:`torch.save`. Loading uses
``weights_only=True`` (safe for untrusted files) and rebuilds the network through the registry,
so a file never needs the code that produced it beyond the builder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from featherface.errors import FeatherFaceError
from featherface.models.registry import build_model
from featherface.utils.atomic import save_torch

FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path, arch: str, model: nn.Module, config: dict[str, Any] | None = None
) -> None:
    """Atomically write ``model``'s weights with the builder name and keyword arguments.

    ``config`` defaults to ``model.config`` when the model has one, else ``{}``.
    """
    payload = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "config": dict(config if config is not None else getattr(model, "config", {})),
        "state_dict": model.state_dict(),
    }
    save_torch(payload, path)


def load_checkpoint(path: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild and load a model saved by :func:`save_checkpoint` (``overrides`` go to the
    builder, e.g. ``deform_implementation``)."""
    path = Path(path)
    if not path.is_file():
        raise FeatherFaceError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FeatherFaceError(f"{path}: not a readable checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise FeatherFaceError(f"{path}: not a featherface checkpoint (format {FORMAT_VERSION})")
    model = build_model(payload["arch"], **{**payload["config"], **overrides})
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise FeatherFaceError(f"{path}: weights do not fit {payload['arch']}: {first}") from None
    return model
