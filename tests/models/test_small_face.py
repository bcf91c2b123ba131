"""The three small-face modules of Nano-B: shapes on odd, non-square pyramids, gradients, size."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from featherface.models.small_face import ASSN, MSEFPN, ScaleDecoupling

CHANNELS = 48  # the neck width Nano-B uses


def _pyramid(requires_grad: bool = False) -> list[Tensor]:
    """P3 of 42x65 with the P4 (21x33) and P5 (11x17) a stride-2 network gives it."""
    torch.manual_seed(0)
    sizes = [(42, 65), (21, 33), (11, 17)]
    return [torch.randn(1, CHANNELS, h, w, requires_grad=requires_grad) for h, w in sizes]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("module", "expected"),
    [(ScaleDecoupling(CHANNELS), 4668), (ASSN(CHANNELS), 8258), (MSEFPN(CHANNELS), 21049)],
    ids=["scale_decoupling", "assn", "mse_fpn"],
)
def test_true_parameter_counts(module: nn.Module, expected: int) -> None:
    assert _count(module) == expected


def test_scale_decoupling_keeps_shape_and_input() -> None:
    p3 = _pyramid()[0]
    before = p3.clone()
    out = ScaleDecoupling(CHANNELS)(p3)
    assert out.shape == p3.shape
    assert torch.equal(p3, before)


def test_scale_decoupling_is_identity_where_the_large_gate_is_closed() -> None:
    module = ScaleDecoupling(CHANNELS).eval()
    last = module.large[-2]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, 100.0)  # sigmoid -> 1: everything looks large
    p3 = _pyramid()[0]
    torch.testing.assert_close(module(p3), p3)


def test_assn_keeps_p3_shape_on_odd_sizes() -> None:
    p3, p4, p5 = _pyramid()
    copies = [t.clone() for t in (p3, p4, p5)]
    out = ASSN(CHANNELS)(p3, p4, p5)
    assert out.shape == p3.shape
    assert all(torch.equal(a, b) for a, b in zip((p3, p4, p5), copies, strict=True))


def test_assn_scale_sequence_reads_every_level() -> None:
    module = ASSN(CHANNELS).eval()
    p3, p4, p5 = _pyramid()
    base = module.scale_sequence(p3, p4, p5)
    assert base.shape == p3.shape
    assert not torch.allclose(module.scale_sequence(p3, p4, p5 + 1.0), base)
    assert not torch.allclose(module.scale_sequence(p3, p4 + 1.0, p5), base)


def test_mse_fpn_keeps_every_level_shape() -> None:
    features = _pyramid()
    copies = [t.clone() for t in features]
    outputs = MSEFPN(CHANNELS)(features)
    assert [o.shape for o in outputs] == [f.shape for f in features]
    assert all(torch.equal(a, b) for a, b in zip(features, copies, strict=True))


def test_mse_fpn_rejects_a_wrong_number_of_levels() -> None:
    with pytest.raises(ValueError, match="expects 3 levels"):
        MSEFPN(CHANNELS)(_pyramid()[:2])


def test_gradients_reach_every_input_and_parameter() -> None:
    features = _pyramid(requires_grad=True)
    modules = [ScaleDecoupling(CHANNELS), ASSN(CHANNELS), MSEFPN(CHANNELS)]
    p3, p4, p5 = modules[2](features)
    loss = modules[0](p3).sum() + modules[1](p3, p4, p5).square().mean() + p5.sum()
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features)
    for module in modules:
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
