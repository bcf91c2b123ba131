"""TorchScript files of a detector, for PyTorch deployments without this package.

The network is traced (:func:`torch.jit.trace`) on a ``1 x 3 x S x S`` input. Tracing records
the shape arithmetic of the models (feature map sizes, "same" padding, upsampling targets,
deformable sampling grids) as operations on the input's shape, so the file runs at any batch
size and input size; the export stage checks it at sizes other than ``S``. The traced module
returns the tuple ``(loc [B, A, 4], conf [B, A, 2] logits, landm [B, A, 10])``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from featherface.errors import FeatherFaceError
from featherface.export.onnx_export import quiet_export


def export_torchscript(model: nn.Module, path: str | Path, trace_size: int = 320) -> None:
    """Trace ``model`` (put in eval mode) on a ``1 x 3 x trace_size x trace_size`` input and
    write it to ``path``."""
    model.eval()
    example = torch.zeros(1, 3, trace_size, trace_size)
    with quiet_export(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Read a TorchScript file onto the CPU; a missing or damaged file is a one-line
    :class:`FeatherFaceError`."""
    path = Path(path)
    if not path.is_file():
        raise FeatherFaceError(f"{path}: TorchScript file not found")
    try:
        with quiet_export():
            return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise FeatherFaceError(f"{path}: not a loadable TorchScript file ({first})") from None
