"""Helpers for data-parallel training launched with ``torchrun``.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus the
rendezvous address) for each process; :func:`init_distributed` reads them and joins the process
group (``nccl`` on CUDA, ``gloo`` on CPU). Without them, everything here describes a single
process and no process group is created, so the same code runs with plain ``python``.

Also here: each process's RNG state (Python, NumPy, torch) as plain tensors and lists, so that a
resumed run restores every rank's generators from a ``weights_only`` checkpoint.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: global ``rank`` of ``world_size``, ``local_rank`` on its
    machine, and the ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes files."""
        return self.rank == 0


def is_initialized() -> bool:
    """True when a process group has been initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str | torch.device | None = None) -> DistributedContext:
    """Join the process group described by ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``.

    ``device`` forces the device type (``"cpu"`` or ``"cuda"``); by default CUDA is used when
    available, each process on GPU ``LOCAL_RANK``. With ``WORLD_SIZE`` unset or 1 no group is
    created and the context of a single process is returned.
    """
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    device_type = torch.device(device).type if device is not None else None
    use_cuda = torch.cuda.is_available() if device_type is None else device_type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not is_initialized():
        if not dist.is_available():
            raise RuntimeError("torch.distributed is not available in this PyTorch build")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank, chosen)


def current_context(device: str | torch.device = "cpu") -> DistributedContext:
    """The context of an already initialised process group (or of a single process), without
    initialising anything; ``device`` is the device this process computes on."""
    device = torch.device(device)
    if not is_initialized():
        return DistributedContext(device=device)
    local_rank = _env_int("LOCAL_RANK", dist.get_rank())
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 or without a process group: the process that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process of the group (no-op without a process group)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes in place and return it (unchanged without a group)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(value: Any) -> list[Any]:
    """``value`` of every process, indexed by rank (``[value]`` without a group)."""
    if not is_initialized():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_tensors(tensors: Iterable[Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values (no-op without a group): for trained
    modules outside DistributedDataParallel, and for buffers such as BatchNorm statistics, which
    each rank updates from its own batches after DDP's last broadcast."""
    if not is_initialized():
        return
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over all processes (no-op without a group); for
    trained parameters outside DistributedDataParallel. Parameters without a gradient on this
    process contribute zeros, so every process issues the same collectives."""
    if not is_initialized():
        return
    world_size = dist.get_world_size()
    for parameter in parameters:
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(world_size)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors, lists and scalars (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states produced by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def wrap_ddp(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``model`` moved to the context's device, in :class:`DistributedDataParallel` when more
    than one process trains (parameters and buffers are broadcast from rank 0)."""
    model = model.to(context.device)
    if not context.is_distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a :class:`DistributedDataParallel` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def cleanup() -> None:
    """Leave and destroy the process group, if any."""
    if is_initialized():
        dist.destroy_process_group()
