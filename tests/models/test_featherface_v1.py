"""FeatherFace V1 and its blocks: CBAM, BiFPN, SSH, channel shuffle, heads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from featherface.models import build_model
from featherface.models.bifpn import BiFPN, BiFPNStack, same_max_pool
from featherface.models.cbam import CBAM, ResidualCBAM
from featherface.models.context import SSH, ChannelShuffle, ChannelShuffleBlock
from featherface.models.featherface_v1 import FeatherFaceV1
from featherface.models.heads import DetectionHead
from featherface.models.outputs import RawOutputs

STRIDES = (8, 16, 32)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def expected_priors(height: int, width: int, anchors: int = 2) -> int:
    return sum(math.ceil(height / s) * math.ceil(width / s) * anchors for s in STRIDES)


def test_cbam_shapes_and_parameters() -> None:
    cbam = CBAM(64, reduction=16)
    x = torch.randn(2, 64, 9, 13)
    assert cbam(x).shape == x.shape
    assert count(cbam) == 680  # 2*64*4 + 4 + 64 (MLP) + 98 (7x7 conv) + 2 (BN)
    residual = ResidualCBAM(64)
    assert bool((residual(x) >= 0).all())


def test_cbam_gates_scale_within_unit_interval() -> None:
    cbam = CBAM(32, reduction=8).eval()
    x = torch.rand(1, 32, 5, 7) + 0.1  # positive input: each gate scales by (0, 1)
    out = cbam(x)
    assert bool((out > 0).all()) and bool((out < x).all())


def test_same_max_pool_sizes_and_zero_padding() -> None:
    for side in (80, 41, 7, 1):
        assert same_max_pool(torch.zeros(1, 1, side, side + 1)).shape[-2:] == (
            math.ceil(side / 2),
            math.ceil((side + 1) / 2),
        )
    # Even side: one zero column/row on the right/bottom only; odd side: one on each side.
    x = -torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    pooled = same_max_pool(x)
    assert pooled[0, 0, 0, 0] == -1.0  # window over rows/cols 0..2: no padding reached
    assert pooled[0, 0, 1, 1] == 0.0  # window reaches the zero padding
    odd = -torch.ones(1, 1, 3, 3)
    assert same_max_pool(odd).flatten().tolist() == [0.0, 0.0, 0.0, 0.0]


def test_bifpn_shapes_on_odd_sizes() -> None:
    stack = BiFPNStack([64, 128, 256], 64, repeats=3).eval()
    assert isinstance(stack[0], BiFPN) and stack[0].first and not stack[1].first
    sizes = [(42, 65), (21, 33), (11, 17)]
    inputs = [torch.randn(1, c, h, w) for c, (h, w) in zip((64, 128, 256), sizes, strict=True)]
    with torch.no_grad():
        outputs = stack(inputs)
    assert [tuple(o.shape) for o in outputs] == [(1, 64, h, w) for h, w in sizes]
    fusion = [p for cell in stack for p in cell.parameters(recurse=False)]
    assert sum(p.numel() for p in fusion) == 30


def test_channel_shuffle_even_then_odd() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    block = ChannelShuffleBlock(64)
    assert [type(m).__name__ for m in block] == [
        "ChannelShuffle",
        "Conv2d",
        "BatchNorm2d",
        "Conv2d",
        "BatchNorm2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
    ]
    assert count(block) == 4_640


@pytest.mark.parametrize("deformable,params", [(False, 34_752), (True, 77_655)])
def test_ssh(deformable: bool, params: int) -> None:
    ssh = SSH(64, 64, deformable=deformable).eval()
    assert count(ssh) == params
    with torch.no_grad():
        out = ssh(torch.randn(1, 64, 7, 9))
    assert out.shape == (1, 64, 7, 9) and bool((out >= 0).all())
    slopes = {m.negative_slope for m in ssh.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.1}


def test_heads_concatenate_level_by_level() -> None:
    head = DetectionHead(16, num_levels=2, num_anchors=2)
    features = [torch.randn(1, 16, 2, 3), torch.randn(1, 16, 1, 1)]
    out = head(features)
    assert out.loc.shape == (1, 14, 4) and out.conf.shape == (1, 14, 2)
    assert out.landm.shape == (1, 14, 10)
    # Prior 2*(row*3 + col) + anchor of level 0 reads cell (row, col), anchor ``anchor``.
    conv = head.bbox[0]
    cell = conv(features[0])[0, :, 1, 2].view(2, 4)
    assert torch.allclose(out.loc[0, 2 * (1 * 3 + 2) + 1], cell[1])


def test_parameter_count() -> None:
    assert count(build_model("featherface-v1")) == 592_371
    assert count(FeatherFaceV1(deform_implementation="torchvision")) == 592_371


@pytest.mark.parametrize("batch,height,width", [(1, 333, 517), (2, 320, 480)])
def test_forward_shapes(batch: int, height: int, width: int) -> None:
    model = build_model("featherface-v1").eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, height, width))
    assert isinstance(out, RawOutputs)
    priors = expected_priors(height, width)
    assert out.loc.shape == (batch, priors, 4)
    assert out.conf.shape == (batch, priors, 2)
    assert out.landm.shape == (batch, priors, 10)


def test_builder_options_and_config(tmp_path: Path) -> None:
    model = build_model("featherface-v1", deform_implementation="torchvision")
    assert model.config == {"deform_implementation": "torchvision"}
    state = {f"module.{k}": v for k, v in model.backbone.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}}, tmp_path / "imagenet.tar")
    loaded = build_model("featherface-v1", backbone_weights=str(tmp_path / "imagenet.tar"))
    for name, tensor in loaded.backbone.state_dict().items():
        assert torch.equal(tensor, model.backbone.state_dict()[name])
