"""Nano-B: output shapes and prior counts, the ablation switches, its size, the registry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from featherface.models import build_model
from featherface.models.backbone import MobileNetV1
from featherface.models.checkpoint import load_checkpoint, save_checkpoint
from featherface.models.nano_b import FeatherFaceNanoB, featherface_nano_b
from featherface.models.outputs import RawOutputs

FULL = 383_670
ABLATIONS = {
    "scale_decoupling": 379_002,
    "assn": 375_412,
    "mse_fpn": 362_621,
}
NO_SMALL_FACE = 349_695


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _priors(height: int, width: int, anchors: int = 2) -> int:
    return anchors * sum(math.ceil(height / s) * math.ceil(width / s) for s in (8, 16, 32))


@pytest.fixture(scope="module")
def model() -> FeatherFaceNanoB:
    torch.manual_seed(0)
    return featherface_nano_b().eval()


@pytest.mark.parametrize("size", [(320, 320), (333, 517)], ids=["320x320", "333x517"])
def test_output_shapes_and_prior_count(model: FeatherFaceNanoB, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert isinstance(out, RawOutputs)
    priors = _priors(*size)
    assert priors == {(320, 320): 4200, (333, 517): 7220}[size]
    assert out.loc.shape == (1, priors, 4)
    assert out.conf.shape == (1, priors, 2)
    assert out.landm.shape == (1, priors, 10)
    assert all(torch.isfinite(t).all() for t in out)


def test_full_size_is_in_the_pre_pruning_band(model: FeatherFaceNanoB) -> None:
    assert _count(model) == FULL
    assert 300_000 <= FULL <= 420_000
    assert _count(model.backbone) == 213_072


@pytest.mark.parametrize("switch", sorted(ABLATIONS))
def test_each_ablation_is_a_valid_smaller_network(switch: str) -> None:
    ablated = featherface_nano_b(**{switch: False}).eval()
    assert getattr(ablated, switch) is None
    assert _count(ablated) == ABLATIONS[switch] < FULL
    with torch.no_grad():
        out = ablated(torch.randn(1, 3, 67, 93))
    assert out.loc.shape == (1, _priors(67, 93), 4)


def test_all_small_face_modules_off() -> None:
    plain = featherface_nano_b(scale_decoupling=False, assn=False, mse_fpn=False).eval()
    assert _count(plain) == NO_SMALL_FACE
    with torch.no_grad():
        assert plain(torch.randn(1, 3, 64, 64)).conf.shape == (1, _priors(64, 64), 2)


def test_deformable_context_is_valid_and_larger() -> None:
    deformable = featherface_nano_b(deformable=True).eval()
    assert _count(deformable) > FULL
    with torch.no_grad():
        assert deformable(torch.randn(1, 3, 64, 96)).landm.shape == (1, _priors(64, 96), 10)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    net = featherface_nano_b().train()
    out = net(torch.randn(2, 3, 64, 64))
    (out.loc.sum() + out.conf.sum() + out.landm.sum()).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_registry_builds_it_and_config_rebuilds_it() -> None:
    model = build_model("featherface-nano-b")
    assert isinstance(model, FeatherFaceNanoB)
    assert _count(model) == FULL
    ablated = build_model("featherface-nano-b", neck_channels=40, assn=False, bifpn_repeats=2)
    assert ablated.config == {
        "neck_channels": 40,
        "bifpn_repeats": 2,
        "scale_decoupling": True,
        "assn": False,
        "mse_fpn": True,
        "deformable": False,
        "deform_implementation": "sampling",
    }
    rebuilt = build_model("featherface-nano-b", **ablated.config)
    shapes = {k: v.shape for k, v in ablated.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_backbone_weights_load_from_the_imagenet_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = MobileNetV1()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 256)
    path = tmp_path / "mobilenetV1X0.25_pretrain.tar"
    torch.save({"epoch": 0, "arch": "mobilenet0.25", "state_dict": state}, path)
    model = build_model("featherface-nano-b", backbone_weights=str(path))
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
    assert "backbone_weights" not in model.config


def test_a_saved_ablation_reloads_through_its_config(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = featherface_nano_b(neck_channels=32, mse_fpn=False).eval()
    save_checkpoint(tmp_path / "nano_b.pt", "featherface-nano-b", model)
    loaded = load_checkpoint(tmp_path / "nano_b.pt").eval()
    assert loaded.config == model.config
    image = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        for a, b in zip(model(image), loaded(image), strict=True):
            torch.testing.assert_close(a, b)
