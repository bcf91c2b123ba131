"""Channel groups of a network and the six layer groups B-FPGM gives a rate each.

Removing output channel ``k`` of a convolution also removes input channel ``k`` of every layer
that reads it, its batch-norm channel, and the same channel of every tensor it is added to,
multiplied with or concatenated into. torch-pruning's dependency graph (Fang et al., "DepGraph:
Towards Any Structural Pruning", CVPR 2023) traces the network once and yields these coupled
sets as *channel groups*, each named by its root layer.

B-FPGM (Kaparinos and Mezaris, WACVW 2025, Sec. 3) searches one pruning rate per *layer group*.
Each channel group joins the layer group of its root's module path:

=================  =====================================================================
layer group        root module path starts with
=================  =====================================================================
backbone_early     ``backbone.stage1``
backbone_middle    ``backbone.stage2``
backbone_late      ``backbone.stage3``
neck               ``backbone_attention``, ``bifpn``, ``mse_fpn``, ``neck_attention``
small_face         ``scale_decoupling``, ``assn``
context            ``context``, ``shuffle``
=================  =====================================================================

Never pruned: the detection heads; single-channel outputs (the CBAM spatial gates); and the
SSH branch outputs (``conv3X3``, ``conv5X5_2``, ``conv7x7_3``), whose concatenation is channel-
shuffled, a permutation the dependency graph does not follow. The BiFPN fusion weights are
per-input scalars, not per-channel, and are left out of the graph.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn

from featherface.prune.fpgm import distance_sums, rounded_prune_count

LAYER_GROUPS: dict[str, tuple[str, ...]] = {
    "backbone_early": ("backbone.stage1",),
    "backbone_middle": ("backbone.stage2",),
    "backbone_late": ("backbone.stage3",),
    "neck": ("backbone_attention", "bifpn", "mse_fpn", "neck_attention"),
    "small_face": ("scale_decoupling", "assn"),
    "context": ("context", "shuffle"),
}
_SHUFFLED_OUTPUTS = ("conv3X3", "conv5X5_2", "conv7x7_3")
_ROOTS = (nn.Conv2d, nn.Conv3d, nn.Linear)
TRACE_SIZE = 64  # side of the example image traced by the dependency graph


def layer_group_of(module_name: str) -> str | None:
    """The layer group of a root module path (see the module table), or None."""
    for group, prefixes in LAYER_GROUPS.items():
        if any(module_name == p or module_name.startswith(p + ".") for p in prefixes):
            return group
    return None


@dataclass(frozen=True)
class ChannelGroup:
    """One set of coupled channels: its layer group, root layer, width and the names of every
    layer it touches."""

    layer_group: str
    root: str
    channels: int
    layers: tuple[str, ...]


def _fusion_weights(model: nn.Module) -> list[nn.Parameter]:
    """Parameters outside any conv, linear or norm layer (the BiFPN fusion weights)."""
    owned = {
        id(p)
        for m in model.modules()
        if isinstance(m, (*_ROOTS, nn.BatchNorm2d))
        for p in m.parameters(recurse=False)
    }
    return [p for p in model.parameters() if id(p) not in owned]


class PruningGraph:
    """The channel groups of ``model`` (traced on a ``TRACE_SIZE`` square image) and the
    operations on them: FPGM selection, soft masks, physical removal.

    A group is dropped when one of its indices falls outside the layer dimension it would cut.
    This happens where the graph misreads an op: it sees the channel max and mean inside a
    CBAM spatial gate as element-wise, and then ties the gate's single-channel convolution to
    the channels the gate reads.

    A *plan* maps a root layer name to the sorted channel indices to remove. The graph holds
    ``model`` itself: :meth:`soft_prune` and :meth:`prune` change it in place.
    ``channel_multiple``: a group that keeps this many channels or more keeps a multiple of it
    (:func:`~featherface.prune.fpgm.rounded_prune_count`).
    """

    def __init__(
        self, model: nn.Module, heads: tuple[str, ...] = ("head",), channel_multiple: int = 1
    ) -> None:
        self.model = model
        self.channel_multiple = channel_multiple
        names = {module: name for name, module in model.named_modules()}
        ignored = [m for m, n in names.items() if n.split(".")[0] in heads]
        was_training = model.training
        model.eval()
        self.graph = tp.DependencyGraph().build_dependency(
            model,
            example_inputs=torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE),
            ignored_params=_fusion_weights(model),
            verbose=False,
        )
        model.train(was_training)
        self._roots: dict[str, tuple[nn.Module, Any]] = {}
        self.groups: list[ChannelGroup] = []
        candidates = self.graph.get_all_groups(ignored_layers=ignored, root_module_types=_ROOTS)
        for group in candidates:
            root = group[0].dep.target.module
            root_name = names[root]
            layer_group = layer_group_of(root_name)
            channels = self.graph.get_out_channels(root)
            if layer_group is None or channels is None or channels < 2:
                continue
            if any(part in _SHUFFLED_OUTPUTS for part in root_name.split(".")):
                continue
            touched = (names.get(item.dep.target.module) for item in group)
            layers = tuple(dict.fromkeys(n for n in touched if n is not None))
            if any(n.split(".")[0] in heads for n in layers) or not _in_range(self.graph, group):
                continue
            self._roots[root_name] = (root, group[0].dep.handler)
            self.groups.append(ChannelGroup(layer_group, root_name, channels, layers))

    @property
    def roots(self) -> list[str]:
        """Root layer names of the kept channel groups."""
        return [g.root for g in self.groups]

    def by_layer_group(self) -> dict[str, list[ChannelGroup]]:
        """The channel groups of each layer group, in :data:`LAYER_GROUPS` order."""
        return {name: [g for g in self.groups if g.layer_group == name] for name in LAYER_GROUPS}

    def _group(self, root_name: str, indices: list[int]) -> tp.Group:
        root, handler = self._roots[root_name]
        return self.graph.get_pruning_group(root, handler, indices)

    def group_scores(self, root_name: str) -> Tensor:
        """FPGM score of each channel of a group: the distance sums (:func:`distance_sums`) of
        every conv and linear layer whose outputs the group removes, each divided by its mean,
        added up. ``Tensor[channels]``; smaller means more replaceable."""
        channels = next(g.channels for g in self.groups if g.root == root_name)
        total = torch.zeros(channels, dtype=torch.float64)
        for item in self._group(root_name, list(range(channels))):
            layer = item.dep.target.module
            if not isinstance(layer, _ROOTS):
                continue
            if not self.graph.is_out_channel_pruning_fn(item.dep.handler):
                continue
            sums = distance_sums(layer.weight)[list(item.idxs)]
            total += sums / sums.mean().clamp(min=1e-12)
        return total

    def plan(self, rates: Mapping[str, float]) -> dict[str, list[int]]:
        """FPGM plan: in every channel group of layer group ``g``, the
        ``rounded_prune_count(channels, rates[g], channel_multiple)`` channels of smallest
        :meth:`group_scores`."""
        unknown = sorted(set(rates) - set(LAYER_GROUPS))
        if unknown:
            raise ValueError(f"unknown layer groups {unknown}; known: {list(LAYER_GROUPS)}")
        plan: dict[str, list[int]] = {}
        for group in self.groups:
            rate = rates.get(group.layer_group, 0.0)
            count = rounded_prune_count(group.channels, rate, self.channel_multiple)
            if count:
                order = torch.argsort(self.group_scores(group.root), stable=True)
                plan[group.root] = sorted(order[:count].tolist())
        return plan

    @torch.no_grad()
    def soft_prune(self, plan: Mapping[str, list[int]]) -> None:
        """Soft filter pruning (He et al., IJCAI 2018): zero the planned channels' filters and
        biases, and their batch-norm shift and running mean, so that they output zero in
        training and in eval mode. Gradients are not masked, so a zeroed filter can grow back;
        for that, what carries its gradient stays: the batch-norm scale, and the filters of
        depthwise convolutions in the group (their input channel is zero already, so they
        output zero anyway)."""
        for root_name, indices in plan.items():
            for item in self._group(root_name, list(indices)):
                layer = item.dep.target.module
                if not self.graph.is_out_channel_pruning_fn(item.dep.handler):
                    continue
                rows = torch.as_tensor(list(item.idxs), dtype=torch.long)
                if isinstance(layer, nn.BatchNorm2d):
                    zeroed = [layer.bias, layer.running_mean]
                elif _depthwise(layer):  # its input channel is zero already
                    zeroed = [layer.bias]
                elif isinstance(layer, _ROOTS):
                    zeroed = [layer.weight, layer.bias]
                else:  # a parameter-free op of the traced graph
                    continue
                for tensor in zeroed:
                    if isinstance(tensor, Tensor):
                        tensor.index_fill_(0, rows, 0.0)

    def prune(self, plan: Mapping[str, list[int]]) -> None:
        """Remove the planned channels from the network for real."""
        for root_name, indices in plan.items():
            if indices:
                self._group(root_name, list(indices)).prune()


def _depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and 1 < layer.groups == layer.in_channels


def _in_range(graph: tp.DependencyGraph, group: tp.Group) -> bool:
    """Whether every index of ``group`` exists in the layer dimension it removes."""
    for item in group:
        layer = item.dep.target.module
        out = graph.is_out_channel_pruning_fn(item.dep.handler)
        size = graph.get_out_channels(layer) if out else graph.get_in_channels(layer)
        if size is not None and item.idxs and max(item.idxs) >= size:
            return False
    return True


def pruned_copy(
    model: nn.Module, rates: Mapping[str, float], channel_multiple: int = 1
) -> nn.Module:
    """A copy of ``model`` with the FPGM plan at ``rates`` (kept widths rounded to
    ``channel_multiple``) removed."""
    clone = copy.deepcopy(model)
    graph = PruningGraph(clone, channel_multiple=channel_multiple)
    graph.prune(graph.plan(rates))
    return clone


def group_parameters(model: nn.Module, group: ChannelGroup) -> int:
    """Parameters of the layers a channel group touches (a layer in two groups counts in both)."""
    modules = dict(model.named_modules())
    return sum(p.numel() for name in group.layers for p in modules[name].parameters(recurse=False))
