"""Parity rules: raw outputs against the float64 result, face lists up to the order of ties and
cut-offs, failure lines; and exports broken on purpose (one weight of the ONNX graph, NMS without
the +1 pixel) that the checks catch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from featherface.detection import Detections, PriorConfig
from featherface.evaluate.runtime import OnnxRunner, TorchRunner
from featherface.export.graph_postprocess import append_postprocess
from featherface.export.onnx_export import raw_graph, save_onnx
from featherface.export.parity import (
    ExportRunners,
    NmsRunner,
    Tolerances,
    _RawTally,
    check_images,
    cutoff_scores,
    failures,
    match_detections,
)
from featherface.export.torchscript import export_torchscript, load_torchscript
from featherface.models.outputs import RawOutputs
from featherface.params import PostprocessSettings

TOLERANCES = Tolerances(atol=1e-4, box_atol_px=0.01)


def _faces(scores: list[float], shift: float = 0.0, order: list[int] | None = None) -> Detections:
    """Faces 10 px apart, each with its own score; ``shift`` moves every coordinate; ``order``
    takes the faces (and scores) in another order."""
    count = len(scores)
    corners = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(count)]) + shift
    points = torch.arange(count * 10, dtype=torch.float32).view(count, 10) + shift
    faces = Detections(corners.reshape(count, 4), torch.tensor(scores), points)
    if order is None:
        return faces
    return Detections(faces.boxes[order], faces.scores[order], faces.landmarks[order])


def test_identical_lists_are_the_same() -> None:
    match = match_detections(_faces([0.9, 0.5, 0.1]), _faces([0.9, 0.5, 0.1]), TOLERANCES)
    assert match.equal and match.passed and match.paired == 3
    assert match.max_box_diff_px == 0.0 and match.max_score_diff == 0.0


def test_faces_of_equal_score_may_come_in_either_order() -> None:
    """Equal scores (within ``rtol``, relative) are ties: their order is free."""
    expected = _faces([0.9, 0.5, 0.5, 0.5, 0.1])
    found = _faces([0.9, 0.5, 0.5, 0.5, 0.1], order=[0, 3, 1, 2, 4])
    match = match_detections(expected, found, TOLERANCES)
    assert match.equal and match.out_of_order == 0
    near = _faces([0.9, 0.5 + 2e-7, 0.5, 0.1], order=[0, 2, 1, 3])  # 2 float32 ulps apart
    assert match_detections(_faces([0.9, 0.5 + 2e-7, 0.5, 0.1]), near, TOLERANCES).equal


def test_faces_of_other_scores_in_the_other_order_are_out_of_order() -> None:
    """Scores within ``atol`` pair, but only ties may swap ranks; nor may a list be unsorted."""
    scores = [0.9, 0.50002, 0.5, 0.1]
    swapped = _faces(scores, order=[0, 2, 1, 3])
    match = match_detections(_faces(scores), swapped, TOLERANCES)
    assert match.paired == 4 and match.out_of_order == 2
    assert not match.passed and not match.equal
    reversed_list = match_detections(_faces(scores), _faces(scores, order=[3, 2, 1, 0]), TOLERANCES)
    assert reversed_list.out_of_order == 4 and not reversed_list.passed


def test_moved_box_missing_face_or_other_score_differ() -> None:
    faces = _faces([0.9, 0.5])
    assert not match_detections(faces, _faces([0.9, 0.5], shift=0.05), TOLERANCES).passed
    assert match_detections(faces, _faces([0.9, 0.5], shift=0.005), TOLERANCES).equal
    missing = match_detections(faces, _faces([0.9]), TOLERANCES, cutoffs=[0.02])
    assert not missing.passed and (missing.expected, missing.found, missing.unpaired) == (2, 1, 1)
    assert not match_detections(faces, _faces([0.9, 0.501]), TOLERANCES).passed
    nothing = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10))
    assert match_detections(nothing, nothing, TOLERANCES).equal


def test_coordinates_compare_to_float32_precision_of_their_size() -> None:
    """A box of 1e7 px (an untrained network's) is exact to about 1 px in float32; a face in the
    image is held to ``box_atol_px``."""
    huge = _faces([0.9], shift=1e7)
    one_ulp = _faces([0.9], shift=1e7 + 1.0)
    assert match_detections(huge, one_ulp, TOLERANCES).equal
    assert not match_detections(huge, _faces([0.9], shift=1e7 + 64.0), TOLERANCES).passed
    assert not match_detections(_faces([0.9], 500.0), _faces([0.9], 500.02), TOLERANCES).passed


def test_faces_at_a_cutoff_may_be_in_one_list_only() -> None:
    """A face scoring at the threshold, or at the last kept score when both lists are full, may
    be on either side of the cut; elsewhere a missing face fails."""
    at_threshold = match_detections(
        _faces([0.9, 0.5, 0.02000001]), _faces([0.9, 0.5]), TOLERANCES, cutoffs=[0.02]
    )
    assert at_threshold.passed and not at_threshold.equal and at_threshold.at_cutoff == 1
    three = _faces([0.9, 0.5, 0.3])
    without_middle = Detections(*(part[[0, 2]] for part in three))
    middle = match_detections(three, without_middle, TOLERANCES, cutoffs=[0.02])
    assert not middle.passed and (middle.paired, middle.unpaired) == (2, 1)
    four = _faces([0.9, 0.5, 0.3, 0.3000001])  # keep_k 3: the last face differs, same score
    expected = Detections(*(part[[0, 1, 2]] for part in four))
    full = Detections(*(part[[0, 1, 3]] for part in four))
    settings = PostprocessSettings(keep_k=3)
    cutoffs = cutoff_scores(torch.tensor([0.9, 0.5, 0.3]), expected, full, settings)
    assert cutoffs == pytest.approx([0.02, 0.3, 0.3000001])
    swapped_at_cut = match_detections(expected, full, TOLERANCES, cutoffs)
    assert swapped_at_cut.passed and swapped_at_cut.at_cutoff == 2
    short = Detections(*(part[:2] for part in full))  # one list not full: no keep_k cut-off
    assert cutoff_scores(torch.tensor([0.9, 0.5, 0.3]), expected, short, settings) == [0.02]


def test_top_k_cutoff_is_the_score_of_the_last_candidate_kept() -> None:
    settings = PostprocessSettings(top_k=2, keep_k=5)
    faces = _faces([0.9])
    candidates = torch.tensor([0.01, 0.9, 0.4, 0.6, 0.03])
    assert cutoff_scores(candidates, faces, faces, settings) == pytest.approx([0.02, 0.6])


def _raw(value: float) -> RawOutputs:
    return RawOutputs(
        torch.full((1, 4, 4), value), torch.full((1, 4, 2), value), torch.full((1, 4, 10), value)
    )


def test_export_may_be_as_far_from_float64_as_torch_times_the_factor() -> None:
    """``max|export - f64| <= max(atol, 4 * max|torch - f64|)`` per output, ``atol`` the floor."""
    tally = _RawTally(Tolerances(atol=1e-4, float64_factor=4.0))
    exact = _raw(1.0)
    tally.add(_raw(1.00001), _raw(1.00009), exact)  # within the floor
    result = tally.result()
    assert result["passed"] and result["images_above_atol"] == 0
    assert result["float64_bound_ratio"] == pytest.approx(0.9, abs=1e-3)
    tally.add(_raw(1.001), _raw(1.0035), exact)  # 2.5e-3 from torch, 3.5x its error: ratio 0.875
    result = tally.result()
    assert result["passed"] and result["images_above_atol"] == 1
    assert result["max_abs_diff"] == pytest.approx(2.5e-3, abs=1e-6)
    assert result["float64_error_torch"] == pytest.approx(1e-3, abs=1e-6)
    assert result["float64_error_export"] == pytest.approx(3.5e-3, abs=1e-6)
    assert result["float64_bound_ratio"] == pytest.approx(0.9, abs=1e-3)  # the first's 0.9
    tally.add(_raw(1.001), _raw(1.0045), exact)  # 4.5 times: not rounding any more
    result = tally.result()
    assert not result["passed"] and result["images_failed"] == 1
    assert result["float64_bound_ratio"] == pytest.approx(1.125, abs=1e-3)


def test_each_output_is_held_to_its_own_float64_error() -> None:
    """PyTorch's large error on ``loc`` does not excuse an error on ``conf``."""
    tally = _RawTally(TOLERANCES)
    exact = _raw(1.0)
    torch_out = RawOutputs(exact.loc + 1e-2, exact.conf, exact.landm)
    export_out = RawOutputs(exact.loc + 1e-2, exact.conf + 1e-3, exact.landm)
    tally.add(torch_out, export_out, exact)
    assert not tally.result()["passed"]


def test_not_a_number_fails() -> None:
    tally = _RawTally(TOLERANCES)
    tally.add(_raw(1.0), _raw(float("nan")), _raw(1.0))
    assert not tally.result()["passed"]


def test_failures_name_the_check_and_its_figures() -> None:
    report = {
        "model": {
            "checks": {
                "synthetic_val": {
                    "onnx_raw": {"images": 2, "max_abs_diff": 0.5, "passed": False},
                    "onnx_nms": {"images": 2, "faces": 4, "faces_onnx": 3, "passed": False},
                    "torchscript": {"images": 2, "max_abs_diff": 0.0, "passed": True},
                },
                "widerface_val4": {"skipped": "no images"},
            }
        }
    }
    assert failures(report) == [
        "model/checks/synthetic_val/onnx_raw: max_abs_diff 0.5",
        "model/checks/synthetic_val/onnx_nms: faces 4, faces_onnx 3",
    ]


# Exports broken on purpose: the checks must see them.

INPUTS = [
    torch.rand(3, 77, 150, generator=torch.Generator().manual_seed(s)) * 255 - 120 for s in (4, 5)
]
SETTINGS = PostprocessSettings()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportRunners, Path]:
    """A pruned Nano-B, its raw graph, NMS graph and TorchScript, traced at 64 x 96."""
    from tests.export.test_onnx_export import pruned_nano_b

    model = pruned_nano_b()
    folder = tmp_path_factory.mktemp("parity")
    raw = raw_graph(model, opset=17, trace_size=64)
    save_onnx(raw, folder / "model.onnx", {})
    save_onnx(append_postprocess(raw, PriorConfig(), SETTINGS), folder / "model_nms.onnx", {})
    export_torchscript(model, folder / "model.ts", trace_size=64)
    runners = ExportRunners(
        torch=TorchRunner(model),
        onnx=OnnxRunner(folder / "model.onnx"),
        torchscript=TorchRunner(load_torchscript(folder / "model.ts")),
        nms=NmsRunner(folder / "model_nms.onnx"),
    )
    return runners, folder


def _check(runners: ExportRunners) -> dict:
    return check_images(runners, INPUTS, TOLERANCES, SETTINGS, PriorConfig())


def test_a_faithful_export_passes(exported) -> None:
    runners, _ = exported
    report = _check(runners)
    assert all(check["passed"] for check in report.values()), report
    assert report["onnx_nms"]["detections_equal"] and report["onnx_nms"]["faces"] >= 10


def _head_weight(model: onnx.ModelProto, output: str) -> onnx.TensorProto:
    """The weight of the first convolution met going back from ``output`` (a detection head)."""
    producers = {value: node for node in model.graph.node for value in node.output}
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    todo = [output]
    while todo:
        node = producers[todo.pop(0)]
        if node.op_type == "Conv":
            return weights[node.input[1]]
        todo += [value for value in node.input if value in producers]
    raise AssertionError(f"no convolution before {output}")


def test_one_changed_weight_of_the_onnx_graph_fails(exported, tmp_path: Path) -> None:
    """One weight of the face classifier moved by 0.01 (its logits move by up to 8e-4): raw
    parity fails; TorchScript, untouched, still passes."""
    runners, folder = exported
    model = onnx.load(str(folder / "model.onnx"))
    weight = _head_weight(model, "conf")
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.01
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(tmp_path / "broken.onnx"))
    report = _check(runners._replace(onnx=OnnxRunner(tmp_path / "broken.onnx")))
    raw = report["onnx_raw"]
    assert not raw["passed"] and raw["images_failed"] == len(INPUTS), raw
    assert raw["float64_bound_ratio"] > 4 and raw["max_abs_diff_conf"] > 4e-4
    assert report["torchscript"]["passed"]
    assert failures({"model": report})[0].startswith("model/onnx_raw: max_abs_diff ")


def test_nms_without_the_plus_one_pixel_fails(exported, tmp_path: Path) -> None:
    """The NMS graph with plain IoU instead of the +1 pixel one keeps other faces."""
    runners, folder = exported
    model = onnx.load(str(folder / "model_nms.onnx"))
    (node,) = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    (shift,) = [n for n in model.graph.node if node.input[0] in n.output]
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    (plus_one,) = [constants[name] for name in shift.input if name in constants]
    assert numpy_helper.to_array(plus_one).tolist() == [0.0, 0.0, 1.0, 1.0]
    plus_one.CopyFrom(numpy_helper.from_array(np.zeros(4, np.float32), plus_one.name))
    onnx.save(model, str(tmp_path / "broken_nms.onnx"))
    report = _check(runners._replace(nms=NmsRunner(tmp_path / "broken_nms.onnx")))
    assert report["onnx_raw"]["passed"]
    nms = report["onnx_nms"]
    assert not nms["passed"] and nms["faces_unpaired"] > 0, nms
