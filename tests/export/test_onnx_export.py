"""ONNX and TorchScript export: raw-output parity at several sizes and batches, the in-graph
post-processing against the Python one, metadata, FeatherFace V1's deformable convolutions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from featherface.detection import PriorConfig, num_priors, postprocess
from featherface.errors import FeatherFaceError
from featherface.evaluate.runtime import OnnxRunner, TorchRunner
from featherface.export.graph_postprocess import (
    NMS_OUTPUTS,
    append_postprocess,
    postprocess_model,
)
from featherface.export.onnx_export import export_metadata, raw_graph, read_metadata, save_onnx
from featherface.export.parity import NmsRunner, Tolerances, match_detections
from featherface.export.torchscript import export_torchscript, load_torchscript
from featherface.models import build_model
from featherface.models.widths import layer_widths
from featherface.params import PostprocessSettings
from featherface.prune.groups import LAYER_GROUPS, pruned_copy
from tests.helpers import randomised_nano_b

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

SIZES = [(1, 3, 64, 96), (2, 3, 77, 150)]  # the traced size, then another batch and odd size
ATOL = 1e-4


def pruned_nano_b() -> nn.Module:
    """A B-FPGM-pruned Nano-B (every layer group at rate 0.5) with non-trivial BatchNorm
    statistics, whose ``config`` rebuilds it through the registry."""
    pruned = pruned_copy(randomised_nano_b(), dict.fromkeys(LAYER_GROUPS, 0.5)).eval()
    pruned.config = {**pruned.config, "widths": layer_widths(pruned)}
    return pruned


@pytest.fixture(scope="module")
def nano(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """The pruned Nano-B and its raw ONNX file, traced at 64 x 96."""
    model = pruned_nano_b()
    path = tmp_path_factory.mktemp("nano") / "model.onnx"
    save_onnx(raw_graph(model, opset=17, trace_size=64), path, {})
    return model, path


def _inputs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Network inputs in the pixel range of BGR minus the mean."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 255 - 120


def _assert_raw_parity(model: nn.Module, runner: OnnxRunner | TorchRunner) -> None:
    for seed, shape in enumerate(SIZES):
        images = _inputs(shape, seed)
        expected = TorchRunner(model).predict(images)
        got = runner.predict(images)
        for name, want, have in zip(("loc", "conf", "landm"), expected, got, strict=True):
            assert have.shape == want.shape == (shape[0], num_priors(shape[2:]), want.shape[2])
            assert float((have - want).abs().max()) <= ATOL, name


def test_raw_graph_follows_the_runtime_contract_with_dynamic_axes(nano) -> None:
    model, path = nano
    graph = onnx.load(str(path)).graph
    assert [value.name for value in graph.input] == ["images"]
    assert [value.name for value in graph.output] == ["loc", "conf", "landm"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [dim.dim_param or dim.dim_value for dim in dims] == ["batch", 3, "height", "width"]
    assert onnx.load(str(path)).opset_import[0].version == 17
    _assert_raw_parity(model, OnnxRunner(path))


@pytest.mark.parametrize(("deform_conv", "opset"), [("native", 19), ("gather", 17)])
def test_featherface_v1_deformable_convs_export_and_match(deform_conv: str, opset: int) -> None:
    torch.manual_seed(1)
    model = build_model("featherface-v1").eval()
    for module in model.modules():  # non-zero offsets, so the sampling is really deformed
        if type(module).__name__ == "ModulatedDeformConv2d":
            nn.init.normal_(module.offset_conv.weight, std=0.01)
            nn.init.normal_(module.modulator_conv.weight, std=0.01)
    graph = raw_graph(model, opset=opset, trace_size=64, deform_conv=deform_conv)
    operators = {node.op_type for node in graph.graph.node}
    assert ("DeformConv" in operators) == (deform_conv == "native")
    layers = [m for m in model.modules() if type(m).__name__ == "ModulatedDeformConv2d"]
    assert {layer.implementation for layer in layers} == {"sampling"}  # restored after export
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed, shape in enumerate(SIZES):
        images = _inputs(shape, seed)
        with torch.no_grad():
            expected = model(images)
        got = session.run(None, {"images": images.numpy()})
        for want, have in zip(expected, got, strict=True):
            assert float(np.abs(have - want.numpy()).max()) <= ATOL


def test_native_deform_conv_needs_opset_19() -> None:
    with pytest.raises(FeatherFaceError, match="opset 19"):
        raw_graph(build_model("featherface-v1"), opset=17, trace_size=64, deform_conv="native")


def test_torchscript_loads_and_matches_at_other_sizes(nano, tmp_path: Path) -> None:
    model, _ = nano
    export_torchscript(model, tmp_path / "model.ts", trace_size=64)
    _assert_raw_parity(model, TorchRunner(load_torchscript(tmp_path / "model.ts")))


def _assert_same_faces(found, expected, box_atol: float = 1e-3) -> None:
    """The same faces up to the order of faces of equal score (their order is the CPU's sort's
    business): same count, each face paired with a face of the other list whose score is within
    1e-6 and whose coordinates are within ``box_atol`` px (plus 1e-6 of their size), the pairs in
    the same order except among ties (:func:`featherface.export.parity.match_detections`)."""
    match = match_detections(expected, found, Tolerances(atol=1e-6, box_atol_px=box_atol))
    assert match.equal, match


@pytest.mark.parametrize(
    ("config", "settings"),
    [
        (PriorConfig(), PostprocessSettings()),
        (
            PriorConfig(min_sizes=((10, 20, 30), (60,)), steps=(4, 16), clip=True),
            PostprocessSettings(score_threshold=0.6, nms_iou=0.3, top_k=40, keep_k=7),
        ),
    ],
)
def test_postprocess_graph_equals_python_on_hand_made_outputs(config, settings) -> None:
    """Priors from the dynamic input size, decoding, threshold, top-k, NMS and keep-k of the
    graph alone, fed random raw outputs of a batch of 3 at odd sizes."""
    session = ort.InferenceSession(
        postprocess_model(config, settings, opset=17).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    gen = torch.Generator().manual_seed(2)
    for height, width in [(33, 47), (120, 88)]:
        priors = config.prior_boxes((height, width))
        shape = (3, len(priors))
        loc, landm = torch.randn(*shape, 4, generator=gen), torch.randn(*shape, 10, generator=gen)
        conf = torch.randn(*shape, 2, generator=gen) * 3
        feed = {"images": np.zeros((3, 3, height, width), np.float32)}
        feed |= {"loc": loc.numpy(), "conf": conf.numpy(), "landm": landm.numpy()}
        boxes, scores, landmarks, index = map(
            torch.from_numpy, session.run(list(NMS_OUTPUTS), feed)
        )
        expected = postprocess(
            (loc, conf, landm), priors, (height, width), score_threshold=settings.score_threshold,
            top_k=settings.top_k, nms_iou=settings.nms_iou, keep_k=settings.keep_k,
            variances=config.variances,
        )  # fmt: skip
        assert index.tolist() == sorted(index.tolist())
        for image, faces in enumerate(expected):
            assert len(faces.scores) > 0
            mine = index == image
            _assert_same_faces(
                type(faces)(boxes[mine], scores[mine], landmarks[mine]), faces, box_atol=1e-3
            )


def test_faces_of_equal_score_are_kept_in_prior_order_by_graph_and_python() -> None:
    """Every score equal (saturated logits, as an untrained network gives): top-k and NMS take
    ties by prior index in both, so the same faces survive, in the same order, on any CPU."""
    config, settings = PriorConfig(), PostprocessSettings(top_k=300, keep_k=40)
    session = ort.InferenceSession(
        postprocess_model(config, settings, opset=17).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    height, width = 96, 128
    priors = config.prior_boxes((height, width))
    gen = torch.Generator().manual_seed(6)
    loc = torch.randn(1, len(priors), 4, generator=gen) * 0.5
    landm = torch.randn(1, len(priors), 10, generator=gen)
    conf = torch.tensor([-20.0, 20.0]).expand(1, len(priors), 2).contiguous()  # scores all 1.0
    feed = {"images": np.zeros((1, 3, height, width), np.float32), "loc": loc.numpy()}
    feed |= {"conf": conf.numpy(), "landm": landm.numpy()}
    boxes, scores, landmarks, _ = map(torch.from_numpy, session.run(list(NMS_OUTPUTS), feed))
    (expected,) = postprocess(
        (loc, conf, landm), priors, (height, width), score_threshold=settings.score_threshold,
        top_k=settings.top_k, nms_iou=settings.nms_iou, keep_k=settings.keep_k,
    )  # fmt: skip
    assert bool((expected.scores == 1.0).all()) and bool((scores == 1.0).all())
    assert len(scores) == len(expected.scores) == settings.keep_k
    torch.testing.assert_close(boxes, expected.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(landmarks, expected.landmarks, atol=1e-3, rtol=0)


def test_nms_graph_of_a_network_gives_the_python_faces(nano, tmp_path: Path) -> None:
    _, path = nano
    nms_path = tmp_path / "model_nms.onnx"
    save_onnx(
        append_postprocess(onnx.load(str(path)), PriorConfig(), PostprocessSettings()), nms_path, {}
    )
    images = _inputs((2, 3, 77, 150), 3)
    raw = OnnxRunner(path).predict(images)
    expected = postprocess(raw, PriorConfig().prior_boxes((77, 150)), (77, 150))
    found = NmsRunner(nms_path).detect(images)
    assert [len(faces.scores) for faces in found] == [len(faces.scores) for faces in expected]
    assert min(len(faces.scores) for faces in found) >= 3
    for mine, theirs in zip(found, expected, strict=True):
        _assert_same_faces(mine, theirs)


def test_metadata_describes_anchors_input_and_thresholds(nano, tmp_path: Path) -> None:
    _, path = nano
    metadata = export_metadata(
        "featherface-nano-b", 1234, PriorConfig(), PostprocessSettings(top_k=99)
    )
    save_onnx(onnx.load(str(path)), tmp_path / "with_metadata.onnx", metadata)
    assert read_metadata(tmp_path / "with_metadata.onnx") == {
        "arch": "featherface-nano-b",
        "params_total": 1234,
        "input": "images float32[B, 3, H, W]: BGR pixels minus input_mean_bgr, not scaled",
        "input_mean_bgr": [104.0, 117.0, 123.0],
        "min_sizes": [[16, 32], [64, 128], [256, 512]],
        "steps": [8, 16, 32],
        "clip": False,
        "variances": [0.1, 0.2],
        "score_threshold": 0.02,
        "nms_iou": 0.4,
        "top_k": 99,
        "keep_k": 750,
    }


def test_append_postprocess_needs_the_raw_outputs() -> None:
    images = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    loc = onnx.helper.make_tensor_value_info("loc", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    node = onnx.helper.make_node("Identity", ["images"], ["loc"])
    graph = onnx.helper.make_graph([node], "only-loc", [images], [loc])
    with pytest.raises(ValueError, match=r"has no \['conf', 'landm'\]"):
        append_postprocess(onnx.helper.make_model(graph), PriorConfig(), PostprocessSettings())
