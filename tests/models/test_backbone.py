"""MobileNetV1 x0.25: feature_info against real outputs, the ImageNet weights loader."""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from featherface.errors import FeatherFaceError
from featherface.models.backbone import MobileNetV1, load_imagenet_weights

REFUSED_CODE = "not a plain-tensor checkpoint (refused to unpickle code)"


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("height,width", [(64, 64), (333, 517), (31, 17)])
def test_feature_info_matches_outputs(height: int, width: int) -> None:
    backbone = MobileNetV1().eval()
    with torch.no_grad():
        features = backbone(torch.zeros(2, 3, height, width))
    assert len(features) == len(backbone.feature_info) == 3
    for feature, info in zip(features, backbone.feature_info, strict=True):
        stride = info["stride"]
        assert feature.shape == (
            2,
            info["channels"],
            math.ceil(height / stride),
            math.ceil(width / stride),
        )
    assert [info["stride"] for info in backbone.feature_info] == [8, 16, 32]
    assert backbone.channels == [64, 128, 256]


def test_parameter_count() -> None:
    backbone = MobileNetV1()
    assert count(backbone) == 213_072
    # The ImageNet file's "218,571 backbone parameters" counts every state tensor element.
    assert sum(t.numel() for t in backbone.state_dict().values()) == 218_571
    assert len(backbone.state_dict()) == 162


def write_legacy_file(path: Path, state: dict[str, torch.Tensor]) -> None:
    """A file shaped like mobilenetV1X0.25_pretrain.tar: old serialisation, optimizer state."""
    classifier = torch.nn.Linear(256, 1000)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=0.1, momentum=0.9)
    classifier(torch.ones(1, 256)).sum().backward()
    optimizer.step()
    state_dict = OrderedDict((f"module.{name}", tensor) for name, tensor in state.items())
    state_dict["module.fc.weight"] = classifier.weight.detach()
    state_dict["module.fc.bias"] = classifier.bias.detach()
    checkpoint = {
        "epoch": 18,
        "arch": "resnet18",
        "state_dict": state_dict,
        "best_acc1": torch.tensor(46.58),
        "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(tensor.shape, generator=generator)
        if tensor.is_floating_point()
        else tensor.clone()
        for name, tensor in MobileNetV1().state_dict().items()
    }


def test_load_imagenet_weights(tmp_path: Path) -> None:
    state = random_state()
    path = tmp_path / "mobilenetV1X0.25_pretrain.tar"
    write_legacy_file(path, state)
    # Plain data only (as in the published file): the safe unpickler reads all of it.
    assert len(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]) == 164
    backbone = MobileNetV1()
    load_imagenet_weights(backbone, path)
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_published_imagenet_file(reference: Path) -> None:
    """The published mobilenetV1X0.25_pretrain.tar, where the reference folder has it."""
    path = reference / "weights" / "mobilenetV1X0.25_pretrain.tar"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    load_imagenet_weights(MobileNetV1(), path)


class _Payload:
    """Unpickling this object creates ``marker`` (with the old unrestricted loader it did)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["zip", "legacy", "pickle-2", "pickle-default"])
def test_crafted_pickle_is_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "mobilenetV1X0.25_pretrain.tar"
    if writer == "legacy":  # the published file's layout with one tensor swapped for code
        state = random_state()
        state["stage1.0.0.weight"] = _Payload(marker)  # type: ignore[assignment]
        write_legacy_file(path, state)
    elif writer == "zip":
        torch.save({"state_dict": {"module.stage1.0.0.weight": _Payload(marker)}}, path)
    else:
        protocol = 2 if writer == "pickle-2" else pickle.DEFAULT_PROTOCOL
        path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=protocol))
    with pytest.raises(FeatherFaceError) as caught:
        load_imagenet_weights(MobileNetV1(), path)
    assert not marker.exists()
    assert str(caught.value) == f"{path}: {REFUSED_CODE}"
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)


def test_non_string_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.tar"
    torch.save({"state_dict": {0: torch.zeros(1)}}, path)
    with pytest.raises(FeatherFaceError, match="keys that are not tensor names"):
        load_imagenet_weights(MobileNetV1(), path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeatherFaceError, match="not found"):
        load_imagenet_weights(MobileNetV1(), tmp_path / "absent.tar")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "text.tar"
    path.write_text("not a checkpoint\n")
    with pytest.raises(FeatherFaceError, match="not a readable torch checkpoint"):
        load_imagenet_weights(MobileNetV1(), path)


def test_wrong_structure(tmp_path: Path) -> None:
    path = tmp_path / "bare.tar"
    torch.save(MobileNetV1().state_dict(), path)  # a bare state_dict, no 'state_dict' entry
    with pytest.raises(FeatherFaceError, match="'state_dict'"):
        load_imagenet_weights(MobileNetV1(), path)


def test_missing_tensor(tmp_path: Path) -> None:
    state = random_state()
    del state["stage3.1.4.running_var"]
    path = tmp_path / "partial.tar"
    write_legacy_file(path, state)
    with pytest.raises(FeatherFaceError, match=r"missing \['stage3.1.4.running_var'\]"):
        load_imagenet_weights(MobileNetV1(), path)


def test_shape_mismatch(tmp_path: Path) -> None:
    state = random_state()
    state["stage2.0.3.weight"] = torch.zeros(128, 32, 1, 1)
    path = tmp_path / "wide.tar"
    write_legacy_file(path, state)
    with pytest.raises(FeatherFaceError, match=r"stage2.0.3.weight has shape \(128, 32, 1, 1\)"):
        load_imagenet_weights(MobileNetV1(), path)


@pytest.mark.parametrize(
    "name", ["featherface_v1_reference.pth", "retinaface_mnet025_reference.pth"]
)
def test_reference_body_keys_strip_to_backbone(reference: Path, name: str) -> None:
    state = torch.load(reference / "weights" / name, map_location="cpu", weights_only=True)
    body = {key.removeprefix("body."): t for key, t in state.items() if key.startswith("body.")}
    MobileNetV1().load_state_dict(body, strict=True)
