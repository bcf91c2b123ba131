"""Channel widths of a network's layers, and rebuilding a network at other widths.

A pruned network differs from its registry default only in the sizes of its convolutions,
linear layers and batch norms. :func:`layer_widths` records those sizes as plain data
(``{module name: [out, in]}`` for convolutions and linear layers, ``[features]`` for batch
norms); :func:`apply_widths` replaces the modules of a freshly built default network by
zero-initialised ones of the recorded sizes, so that a checkpoint of the pruned network loads
through the registry without any pruning code and without pickled modules.

A convolution that was depthwise (``groups == in_channels == out_channels``) stays depthwise at
its new width; every other convolution keeps its group count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

Widths = dict[str, list[int]]

_RESIZABLE = (nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm2d)


def layer_widths(model: nn.Module) -> Widths:
    """``{name: [out, in]}`` of every conv and linear layer, ``{name: [features]}`` of every
    batch norm, in module order."""
    widths: Widths = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            widths[name] = [module.out_channels, module.in_channels]
        elif isinstance(module, nn.Linear):
            widths[name] = [module.out_features, module.in_features]
        elif isinstance(module, nn.BatchNorm2d):
            widths[name] = [module.num_features]
    return widths


def _resized(module: nn.Module, width: Sequence[int]) -> nn.Module:
    """A fresh module like ``module`` with the sizes ``width`` (see :func:`layer_widths`)."""
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            width[0], module.eps, module.momentum, module.affine, module.track_running_stats
        )
    out_size, in_size = width
    if isinstance(module, nn.Linear):
        return nn.Linear(in_size, out_size, bias=module.bias is not None)
    assert isinstance(module, (nn.Conv2d, nn.Conv3d))
    depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
    groups = in_size if depthwise else module.groups
    if depthwise and in_size != out_size:
        raise ValueError(f"depthwise conv resized to {out_size} outputs from {in_size} inputs")
    return type(module)(
        in_size,
        out_size,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        groups,
        module.bias is not None,
        module.padding_mode,
    )


def apply_widths(model: nn.Module, widths: Mapping[str, Sequence[int]]) -> nn.Module:
    """Resize ``model``'s layers in place to ``widths`` (see :func:`layer_widths`); returns it.

    Layers not named keep their size; a named layer that does not exist, or is not a conv,
    linear or batch-norm layer, raises ``ValueError``. New layers carry fresh weights (load a
    state dict afterwards).
    """
    modules = dict(model.named_modules())
    for name, width in widths.items():
        module = modules.get(name)
        if not isinstance(module, _RESIZABLE):
            raise ValueError(f"widths name {name!r}: no conv, linear or batch-norm layer")
        if list(width) == layer_widths(module)[""]:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name], child, _resized(module, width))
    return model
