"""Checkpoint conversion from the original code bases, and parity with their outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featherface.data.transforms import to_network_input
from featherface.errors import FeatherFaceError
from featherface.models import build_model
from featherface.models.convert import convert_state_dict, load_reference_checkpoint

WEIGHTS = {
    "featherface-v1": ("featherface_v1_reference.pth", 587),
    "retinaface-mnet025": ("retinaface_mnet025_reference.pth", 300),
}
OUTPUTS = {
    "featherface-v1": ("featherface_outputs_640.npz", "featherface_v1"),
    "retinaface-mnet025": ("retinaface_outputs_640.npz", "retinaface_mnet025"),
}
TOLERANCE = 1e-4


def reference_state(reference: Path, arch: str) -> dict[str, torch.Tensor]:
    name, _ = WEIGHTS[arch]
    return torch.load(reference / "weights" / name, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("arch", sorted(WEIGHTS))
def test_reference_checkpoint_converts_completely(reference: Path, arch: str) -> None:
    state = reference_state(reference, arch)
    assert len(state) == WEIGHTS[arch][1]
    converted = convert_state_dict(arch, state)
    assert len(converted) == len(state)
    build_model(arch).load_state_dict(converted, strict=True)


def test_typo_key_and_data_parallel_prefix(reference: Path) -> None:
    state = reference_state(reference, "featherface-v1")
    converted = convert_state_dict("featherface-v1", state)
    source = state["bacbkbone_1_cbam.ChannelGate.mlp.3.weight"]
    assert converted["backbone_attention.1.cbam.channel_gate.fc2.weight"] is source
    prefixed = {
        f"module.{key}": tensor
        for key, tensor in reference_state(reference, "retinaface-mnet025").items()
    }
    converted = convert_state_dict("retinaface-mnet025", prefixed)
    assert converted["fpn.lateral.2.0.weight"] is prefixed["module.fpn.output3.0.weight"]


def test_unused_and_missing_keys_are_listed(reference: Path) -> None:
    state = dict(reference_state(reference, "retinaface-mnet025"))
    state["fpn.output4.0.weight"] = torch.zeros(1)
    del state["ssh2.conv7x7_3.1.bias"]
    with pytest.raises(FeatherFaceError) as error:
        convert_state_dict("retinaface-mnet025", state)
    message = str(error.value)
    assert "unused source keys 1 (fpn.output4.0.weight)" in message
    assert "missing target keys 1 (context.1.conv7x7_3.1.bias)" in message
    assert "\n" not in message


def test_wrong_model_layout_fails_without_reference() -> None:
    ours = build_model("retinaface-mnet025").state_dict()
    with pytest.raises(FeatherFaceError, match="unused source keys"):
        convert_state_dict("featherface-v1", ours)
    with pytest.raises(FeatherFaceError, match="no converter"):
        convert_state_dict("featherface-nano-b", {})


def test_shape_mismatch(reference: Path) -> None:
    state = dict(reference_state(reference, "retinaface-mnet025"))
    state["ClassHead.0.conv1x1.weight"] = torch.zeros(6, 64, 1, 1)
    with pytest.raises(FeatherFaceError, match=r"ClassHead.0.conv1x1.weight has shape"):
        convert_state_dict("retinaface-mnet025", state)


def test_load_reference_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FeatherFaceError, match="not found"):
        load_reference_checkpoint("retinaface-mnet025", tmp_path / "absent.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"layer": torch.nn.Linear(2, 2)}, pickled)  # a module: refused by weights_only
    with pytest.raises(FeatherFaceError, match=r"pickled\.pth: not a plain-tensor checkpoint"):
        load_reference_checkpoint("retinaface-mnet025", pickled)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3}, wrapped)
    with pytest.raises(FeatherFaceError, match="expected a state_dict"):
        load_reference_checkpoint("retinaface-mnet025", wrapped)


def reference_input(reference: Path) -> torch.Tensor:
    """BGR (as cv2 reads it) float32 minus (104, 117, 123), NCHW, not scaled."""
    rgb = np.asarray(Image.open(reference / "outputs" / "input_640.png").convert("RGB"))
    return to_network_input(rgb)[None]


@pytest.mark.parametrize(
    "arch,options",
    [
        ("featherface-v1", {"deform_implementation": "sampling"}),
        ("featherface-v1", {"deform_implementation": "torchvision"}),
        ("retinaface-mnet025", {}),
    ],
)
def test_reference_outputs(reference: Path, arch: str, options: dict[str, str]) -> None:
    model = build_model(arch, **options)
    model = load_reference_checkpoint(arch, reference / "weights" / WEIGHTS[arch][0], model)
    with torch.no_grad():
        out = model.eval()(reference_input(reference))
    npz_name, summary_name = OUTPUTS[arch]
    expected = np.load(reference / "outputs" / npz_name)
    ours = {"loc": out.loc, "conf": out.conf.softmax(dim=-1), "landm": out.landm}
    for key, value in ours.items():
        assert value.shape == expected[key].shape
        difference = float(np.abs(value.numpy() - expected[key]).max())
        assert difference <= TOLERANCE, f"{key}: max abs difference {difference}"
    summary = json.loads((reference / "expected.json").read_text())["raw_outputs_640"]["summary"]
    figures = summary[summary_name]
    assert float(out.loc.sum()) == pytest.approx(figures["loc_sum"], abs=0.05)
    face = ours["conf"][0, :, 1]
    assert float(face.max()) == pytest.approx(figures["conf_face_max"], abs=TOLERANCE)
    assert int((face > 0.5).sum()) == figures["anchors_face_over_0.5"]
