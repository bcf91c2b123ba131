"""Parity rules: pairing of face lists, the float64 arbiter of raw outputs, failure lines."""

from __future__ import annotations

import torch

from featherface.detection import Detections
from featherface.export.parity import Tolerances, _RawTally, failures, match_detections
from featherface.models.outputs import RawOutputs

TOLERANCES = Tolerances(atol=1e-4, box_atol_px=0.01)


def _faces(scores: list[float], shift: float = 0.0) -> Detections:
    """Faces 10 px apart, each with its own score; ``shift`` moves every coordinate."""
    count = len(scores)
    corners = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(count)]) + shift
    points = torch.arange(count * 10, dtype=torch.float32).view(count, 10) + shift
    return Detections(corners.reshape(count, 4), torch.tensor(scores), points)


def test_identical_lists_are_the_same() -> None:
    match = match_detections(_faces([0.9, 0.5, 0.1]), _faces([0.9, 0.5, 0.1]), TOLERANCES)
    assert match.equal and match.paired == 3
    assert match.max_box_diff_px == 0.0 and match.max_score_diff == 0.0


def test_near_equal_scores_may_swap_ranks() -> None:
    expected = _faces([0.9, 0.50002, 0.5, 0.1])
    swapped = Detections(
        expected.boxes[[0, 2, 1, 3]],
        torch.tensor([0.9, 0.50001, 0.50001, 0.1]),
        expected.landmarks[[0, 2, 1, 3]],
    )
    match = match_detections(expected, swapped, TOLERANCES)
    assert match.equal
    assert abs(match.max_score_diff - 1e-5) < 1e-6


def test_moved_box_missing_face_or_other_score_differ() -> None:
    faces = _faces([0.9, 0.5])
    assert not match_detections(faces, _faces([0.9, 0.5], shift=0.05), TOLERANCES).equal
    assert match_detections(faces, _faces([0.9, 0.5], shift=0.005), TOLERANCES).equal
    missing = match_detections(faces, _faces([0.9]), TOLERANCES)
    assert not missing.equal and (missing.expected, missing.found) == (2, 1)
    assert not match_detections(faces, _faces([0.9, 0.501]), TOLERANCES).equal
    nothing = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10))
    assert match_detections(nothing, nothing, TOLERANCES).equal


def _raw(value: float) -> RawOutputs:
    return RawOutputs(
        torch.full((1, 4, 4), value), torch.full((1, 4, 2), value), torch.full((1, 4, 10), value)
    )


def test_differences_above_atol_pass_only_within_float32_rounding() -> None:
    """Above ``atol``, the export must be no further from float64 than PyTorch's float32 is."""
    tally = _RawTally(atol=1e-4)
    exact = _raw(1.0)
    tally.add(_raw(1.0), _raw(1.00005), lambda: exact)  # within atol: float64 not consulted
    assert tally.result()["passed"] and tally.result()["images_above_atol"] == 0
    tally.add(_raw(1.0003), _raw(1.0001), lambda: exact)  # 2e-4 apart, export nearer to exact
    result = tally.result()
    assert result["passed"] and result["images_above_atol"] == 1
    assert abs(result["max_abs_diff"] - 2e-4) < 1e-6
    assert abs(result["float64_error_torch"] - 3e-4) < 1e-6
    tally.add(_raw(1.0), _raw(1.0003), lambda: exact)  # the export alone is off
    assert not tally.result()["passed"]


def test_not_a_number_fails() -> None:
    tally = _RawTally(atol=1e-4)
    tally.add(_raw(1.0), _raw(float("nan")), lambda: _raw(1.0))
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
