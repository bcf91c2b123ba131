"""Channel groups of Nano-B: soft masks, physical removal, parameter counts, rebuilding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featherface.models.checkpoint import load_checkpoint, save_checkpoint
from featherface.models.complexity import params_total
from featherface.models.widths import layer_widths
from featherface.prune.groups import (
    LAYER_GROUPS,
    PruningGraph,
    layer_group_of,
    pruned_copy,
)
from tests.helpers import randomised_nano_b

ALL_HALF = dict.fromkeys(LAYER_GROUPS, 0.5)


@pytest.fixture(scope="module")
def student() -> nn.Module:
    return randomised_nano_b()


def _outputs(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.eval()(images))


def test_six_layer_groups_without_heads(student: nn.Module) -> None:
    graph = PruningGraph(copy.deepcopy(student))
    groups = graph.by_layer_group()
    assert list(groups) == list(LAYER_GROUPS)
    assert all(groups[name] for name in LAYER_GROUPS), {k: len(v) for k, v in groups.items()}
    for group in graph.groups:
        assert not any(layer.startswith("head") for layer in group.layers)
        assert "conv3X3" not in group.root and "spatial_gate" not in group.root
    assert layer_group_of("backbone.stage2.3.0") == "backbone_middle"
    assert layer_group_of("head.class_heads.0") is None


def test_rates_zero_change_nothing(student: nn.Module) -> None:
    model = copy.deepcopy(student)
    images = torch.randn(1, 3, 96, 64)
    before = _outputs(model, images)
    graph = PruningGraph(model)
    plan = graph.plan(dict.fromkeys(LAYER_GROUPS, 0.0))
    assert plan == {}
    graph.prune(plan)
    assert params_total(model) == params_total(student)
    for a, b in zip(before, _outputs(model, images), strict=True):
        torch.testing.assert_close(a, b)


def test_removal_equals_zeroing_outside_cbam(student: nn.Module) -> None:
    """Removing channels gives the outputs that zeroing them gives, exactly, for the groups that
    feed no CBAM (whose spatial gate averages over channels, so a removed zero channel changes
    the mean); with CBAM-fed groups too the outputs stay close."""
    images = torch.randn(2, 3, 96, 128)
    backbone_and_context = {
        name: 0.5 for name in ("backbone_early", "backbone_middle", "backbone_late", "context")
    }
    for rates, tolerance in ((backbone_and_context, 1e-5), (ALL_HALF, 5e-2)):
        zeroed, removed = copy.deepcopy(student), copy.deepcopy(student)
        zeroed_graph, removed_graph = PruningGraph(zeroed), PruningGraph(removed)
        plan = zeroed_graph.plan(rates)
        assert plan == removed_graph.plan(rates)
        zeroed_graph.soft_prune(plan)
        removed_graph.prune(plan)
        assert params_total(removed) < params_total(zeroed)
        for a, b in zip(_outputs(zeroed, images), _outputs(removed, images), strict=True):
            torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)


def test_soft_masks_zero_and_can_recover(student: nn.Module) -> None:
    model = copy.deepcopy(student).train()
    graph = PruningGraph(model)
    plan = graph.plan({"context": 0.5})
    root = "context.0.conv5X5_1.0"  # a plain convolution, the root of its group
    graph.soft_prune(plan)
    layer = dict(model.named_modules())[root]
    assert layer.weight[plan[root]].abs().sum() == 0
    kept = sorted(set(range(layer.weight.shape[0])) - set(plan[root]))
    assert layer.weight[kept].abs().sum() > 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = sum(o.float().square().mean() for o in model(torch.randn(2, 3, 64, 64)))
    loss.backward()
    optimizer.step()
    assert layer.weight[plan[root]].abs().sum() > 0  # gradients are not masked


def test_counts_shrink_with_rates_and_checkpoint_rebuilds(tmp_path, student: nn.Module) -> None:
    counts = [
        params_total(pruned_copy(student, dict.fromkeys(LAYER_GROUPS, rate)))
        for rate in (0.0, 0.3, 0.6, 0.9)
    ]
    assert counts[0] == params_total(student)
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == 4

    pruned = pruned_copy(student, ALL_HALF)
    pruned.config = {**pruned.config, "widths": layer_widths(pruned)}
    save_checkpoint(tmp_path / "pruned.pt", "featherface-nano-b", pruned)
    rebuilt = load_checkpoint(tmp_path / "pruned.pt")
    assert params_total(rebuilt) == params_total(pruned)
    images = torch.randn(1, 3, 64, 96)
    for a, b in zip(_outputs(pruned, images), _outputs(rebuilt, images), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1")
def test_pruned_model_exports_to_onnx(tmp_path, student: nn.Module) -> None:
    onnx = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pruned = pruned_copy(student, ALL_HALF).eval()
    images = torch.randn(1, 3, 64, 64)
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(
        pruned, (images,), str(path), input_names=["images"], opset_version=17, dynamo=False
    )
    session = onnx.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    for expected, actual in zip(_outputs(pruned, images), got, strict=True):
        torch.testing.assert_close(torch.from_numpy(actual), expected, atol=1e-4, rtol=1e-4)


def test_channel_multiple_rounds_every_kept_width(student: nn.Module) -> None:
    rates = {name: 0.3 + 0.1 * number for number, name in enumerate(LAYER_GROUPS)}
    plain = PruningGraph(copy.deepcopy(student)).plan(rates)
    graph = PruningGraph(copy.deepcopy(student), channel_multiple=8)
    plan = graph.plan(rates)
    assert plan != plain
    for group in graph.groups:
        kept = group.channels - len(plan.get(group.root, []))
        assert kept < 8 or kept % 8 == 0 or kept == group.channels, (group.root, kept)
    rounded = pruned_copy(student, rates, channel_multiple=8)
    widths = [m.weight.shape[0] for n, m in rounded.named_modules() if n in plan]
    assert widths and all(w < 8 or w % 8 == 0 for w in widths)


def test_unknown_layer_group_rejected(student: nn.Module) -> None:
    graph = PruningGraph(copy.deepcopy(student))
    with pytest.raises(ValueError, match="unknown layer groups"):
        graph.plan({"heads": 0.5})
