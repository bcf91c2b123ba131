"""Model size and cost: true parameter counts, the paper's convention, multiply-accumulates.

- ``params_total``: ``sum(p.numel())`` over every parameter of the module as it runs.
- ``params_paper``: the count the FeatherFace paper reports ("0.49M"), which is thop's. thop sees
  parameters only through the leaf modules it hooks, so it misses (a) the weight of each
  deformable conv's ``regular_conv``, used only inside the deformable sampling, and (b) the
  BiFPN fusion weights, which belong to the BiFPN cell itself rather than to a leaf. For
  FeatherFace V1 that is 592,371 - 103,680 - 30 = 488,661.
- ``gmacs``: multiply-accumulates / 1e9 from :class:`torch.utils.flop_counter.FlopCounterMode`
  (FLOPs / 2) for one image. A deformable conv is counted as its offset and modulator convs plus
  the ``k*k*C_in -> C_out`` product over the sampled columns, the same as a regular conv of that
  size; the bilinear sampling itself is not counted (it is not a multiply-accumulate).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from featherface.models.bifpn import BiFPN
from featherface.models.deform import ModulatedDeformConv2d


def params_total(module: nn.Module) -> int:
    """True parameter count."""
    return sum(parameter.numel() for parameter in module.parameters())


def _uncounted_by_thop(module: nn.Module) -> Iterator[nn.Parameter]:
    for child in module.modules():
        if isinstance(child, ModulatedDeformConv2d):
            yield from child.regular_conv.parameters()
        elif isinstance(child, BiFPN):
            yield from child.parameters(recurse=False)


def params_paper(module: nn.Module) -> int:
    """Parameter count in the paper's (thop's) convention; see the module docstring."""
    skipped = {id(parameter): parameter.numel() for parameter in _uncounted_by_thop(module)}
    return params_total(module) - sum(skipped.values())


def _subtree_flops(per_module: dict[str, dict], prefix: str) -> float:
    """FLOPs under ``prefix``: the entry itself, or, for a container that is never called (a
    ``ModuleList``), the sum of its shallowest called descendants."""
    keys = [key for key in per_module if key == prefix or key.startswith(prefix + ".")]
    if not keys:
        return 0.0
    depth = min(key.count(".") for key in keys)
    return float(sum(sum(per_module[key].values()) for key in keys if key.count(".") == depth))


def mac_counts(
    module: nn.Module, image_size: tuple[int, int] = (640, 640)
) -> tuple[float, dict[str, float]]:
    """GMACs of one forward pass on a ``1x3xHxW`` input: the total and per direct child module.

    The module is run in eval mode under ``torch.no_grad`` and restored to its previous mode.
    """
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    image = torch.zeros(1, 3, *image_size)
    try:
        with torch.no_grad(), counter:
            module(image)
    finally:
        module.train(was_training)
    per_module = counter.get_flop_counts()
    root = type(module).__name__  # FlopCounterMode names modules "<RootClass>.<child path>"
    children = {
        name: _subtree_flops(per_module, f"{root}.{name}") / 2 / 1e9
        for name, _ in module.named_children()
    }
    return counter.get_total_flops() / 2 / 1e9, children
