"""One inference interface over a PyTorch module or an ONNX file.

A runner maps a batch of network inputs to the raw detector outputs::

    predict(images float32[B, 3, H, W])
        -> RawOutputs(loc [B, A, 4], conf [B, A, 2], landm [B, A, 10])

The input is the reference convention (BGR minus the mean (104, 117, 123), not scaled; see
:func:`featherface.data.transforms.to_network_input`); ``A`` is the number of priors of an
``H x W`` input; ``conf`` holds logits (background, face), never probabilities. Outputs are CPU
float32 tensors whatever the runner computed them on.

ONNX contract: the graph has one input named ``images`` of shape ``[B, 3, H, W]`` (``B``, ``H``
and ``W`` may be dynamic axes) and three outputs named ``loc``, ``conf`` and ``landm`` with the
shapes and meaning above. A graph with other names is refused with an error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import load_checkpoint
from featherface.models.outputs import RawOutputs

ONNX_INPUT = "images"
ONNX_OUTPUTS: tuple[str, str, str] = ("loc", "conf", "landm")


class Runner(Protocol):
    """Anything that turns ``float32[B, 3, H, W]`` network inputs into :class:`RawOutputs`."""

    def predict(self, images: Tensor | np.ndarray) -> RawOutputs:
        """Raw outputs (CPU float32 tensors, ``conf`` logits) for a batch of inputs."""
        ...


class TorchRunner:
    """Runs an ``nn.Module`` (moved to ``device``, put in eval mode) without gradients."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def predict(self, images: Tensor | np.ndarray) -> RawOutputs:
        """See :class:`Runner`."""
        batch = torch.as_tensor(images, dtype=torch.float32).to(self.device)
        with torch.no_grad():
            loc, conf, landm = self.model(batch)
        return RawOutputs(loc.float().cpu(), conf.float().cpu(), landm.float().cpu())


class OnnxRunner:
    """Runs an ONNX detector (see the module's contract) with onnxruntime on the CPU.

    ``threads``: onnxruntime's intra-op thread count (``None``: its default).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        try:
            import onnxruntime
        except ImportError:
            raise FeatherFaceError(f"{self.path}: onnxruntime is not installed") from None
        if not self.path.is_file():
            raise FeatherFaceError(f"{self.path}: ONNX model not found")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own types for damaged graphs
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise FeatherFaceError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self._check_names()

    def _check_names(self) -> None:
        inputs = [node.name for node in self.session.get_inputs()]
        outputs = {node.name for node in self.session.get_outputs()}
        if inputs != [ONNX_INPUT] or not set(ONNX_OUTPUTS) <= outputs:
            raise FeatherFaceError(
                f"{self.path}: expected input {ONNX_INPUT!r} and outputs {list(ONNX_OUTPUTS)}, "
                f"found inputs {inputs} and outputs {sorted(outputs)}"
            )

    def predict(self, images: Tensor | np.ndarray) -> RawOutputs:
        """See :class:`Runner`."""
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        batch = np.ascontiguousarray(images, dtype=np.float32)
        loc, conf, landm = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: batch})
        return RawOutputs(torch.from_numpy(loc), torch.from_numpy(conf), torch.from_numpy(landm))


def load_runner(
    path: str | Path, device: str | torch.device = "cpu", threads: int | None = None
) -> TorchRunner | OnnxRunner:
    """A runner for one of our ``.pt`` checkpoints (:func:`load_checkpoint`, run on ``device``)
    or an ``.onnx`` file (run by onnxruntime on the CPU with ``threads`` threads)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxRunner(path, threads=threads)
    if suffix in (".pt", ".pth"):
        return TorchRunner(load_checkpoint(path), device=device)
    raise FeatherFaceError(f"{path}: unknown model file type (expected .pt, .pth or .onnx)")
