"""RetinaFace-MobileNet0.25: size, FPN, output shapes."""

from __future__ import annotations

import math

import pytest
import torch

from featherface.models import build_model
from featherface.models.outputs import RawOutputs
from featherface.models.retinaface import FPN, RetinaFaceMNet


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count() -> None:
    model = build_model("retinaface-mnet025")
    assert isinstance(model, RetinaFaceMNet)
    assert count(model) == 426_608
    assert count(model.fpn) == 103_040
    assert model.config == {}


def test_fpn_top_down_merge() -> None:
    fpn = FPN([8, 16, 32], 8).eval()
    sizes = [(11, 7), (6, 4), (3, 2)]
    features = [torch.randn(1, c, h, w) for c, (h, w) in zip((8, 16, 32), sizes, strict=True)]
    with torch.no_grad():
        p3, p4, p5 = fpn(features)
        assert [tuple(p.shape[-2:]) for p in (p3, p4, p5)] == sizes
        assert torch.equal(p5, fpn.lateral[2](features[2]))
        up = torch.nn.functional.interpolate(p5, size=sizes[1], mode="nearest")
        assert torch.equal(p4, fpn.merge[1](fpn.lateral[1](features[1]) + up))
    slopes = {m.negative_slope for m in fpn.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.1}
    wide = FPN([8, 16, 32], 128)
    assert {m.negative_slope for m in wide.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.0}


@pytest.mark.parametrize("batch,height,width", [(1, 333, 517), (2, 320, 480)])
def test_forward_shapes(batch: int, height: int, width: int) -> None:
    model = build_model("retinaface-mnet025").eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, height, width))
    assert isinstance(out, RawOutputs)
    priors = sum(math.ceil(height / s) * math.ceil(width / s) * 2 for s in (8, 16, 32))
    assert out.loc.shape == (batch, priors, 4)
    assert out.conf.shape == (batch, priors, 2)
    assert out.landm.shape == (batch, priors, 10)
