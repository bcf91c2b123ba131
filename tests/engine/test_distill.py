"""Distillation: feature taps, each KD term by hand and at its zero, the loss module, a tiny run."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from featherface.detection.priors import prior_boxes
from featherface.engine.distill_loss import (
    DistillationLoss,
    DistillationWeights,
    build_adapters,
    classification_kd,
    face_masks,
    feature_imitation,
    regression_kd,
)
from featherface.engine.losses import MultiBoxLoss
from featherface.models.featherface_v1 import FeatherFaceV1
from featherface.models.features import NeckFeatureTap, neck_channels
from featherface.models.nano_b import FeatherFaceNanoB

SIZE = 64
KD_KEYS = ("kd_cls", "kd_box", "kd_landm", "kd_feat")
ZERO = torch.tensor(0.0)


def faces(*boxes: list[float]) -> dict[str, Tensor]:
    """Faces (normalised corners), each with five landmarks inside its box."""
    landmarks = [
        [x1 + f * (x2 - x1) if i % 2 == 0 else y1 + f * (y2 - y1) for i, f in enumerate(POINTS)]
        for x1, y1, x2, y2 in boxes
    ]
    return {"boxes": torch.tensor(boxes), "landmarks": torch.tensor(landmarks)}


POINTS = (0.3, 0.4, 0.7, 0.4, 0.5, 0.6, 0.35, 0.8, 0.65, 0.8)  # (x, y) fractions of the box
TARGETS = [
    faces([0.1, 0.1, 0.45, 0.5], [0.6, 0.05, 0.85, 0.35]),
    faces([0.5, 0.4, 0.9, 0.9]),
]


def images(seed: int = 0) -> Tensor:
    """Two inputs as the detectors take them (BGR minus the mean, not scaled)."""
    return 50.0 * torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def identity_adapters(adapters: nn.ModuleList) -> None:
    """Make each 1x1 adapter copy its input (student and teacher have the same channels)."""
    with torch.no_grad():
        for conv in adapters:
            conv.weight.copy_(torch.eye(conv.out_channels, conv.in_channels)[:, :, None, None])
            conv.bias.zero_()


class ExplodingTeacher(nn.Module):
    """A teacher whose forward must never run."""

    def forward(self, images: Tensor) -> None:
        raise AssertionError("the teacher ran")


def test_v1_tap_reads_bifpn_attention_outputs() -> None:
    torch.manual_seed(0)
    model = FeatherFaceV1().eval()
    expected: list[Tensor] = []
    for module in model.bifpn_attention:
        module.register_forward_hook(lambda _m, _a, out: expected.append(out))
    x = images()
    with torch.no_grad():
        plain = model(x)
        expected.clear()
        tap = NeckFeatureTap(model)
        outputs, features = tap(x)
    assert tap.channels == [64, 64, 64] == neck_channels(model)
    assert [tuple(f.shape) for f in features] == [(2, 64, 8, 8), (2, 64, 4, 4), (2, 64, 2, 2)]
    for got, want in zip(features, expected, strict=True):
        assert got is want
    for got, want in zip(outputs, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_nano_b_tap_reads_neck_outputs_and_can_be_removed() -> None:
    torch.manual_seed(0)
    model = FeatherFaceNanoB().eval()
    x = images()
    tap = NeckFeatureTap(model)
    assert tap.channels == [48, 48, 48]
    with torch.no_grad():
        _, features = tap(x)
        neck = model.neck(model.backbone(x))
        for got, want in zip(features, neck, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="no features captured"):
        tap.take()
    tap.remove()
    with torch.no_grad():
        model(x)
    with pytest.raises(RuntimeError):
        tap.take()


def test_classification_kd_by_hand() -> None:
    student = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
    teacher = torch.tensor([[[0.0, 0.0], [3.0, 1.0]]])
    temperature = 2.0

    def softmax(a: float, b: float) -> tuple[float, float]:
        ea, eb = math.exp(a / temperature), math.exp(b / temperature)
        return ea / (ea + eb), eb / (ea + eb)

    kls = []
    for s, t in zip(student[0].tolist(), teacher[0].tolist(), strict=True):
        p, q = softmax(*t), softmax(*s)
        kls.append(sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True)))
    expected = temperature**2 * sum(kls) / 2
    got = classification_kd(student, teacher, temperature)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(classification_kd(teacher, teacher, temperature), ZERO)


def test_regression_kd_uses_confident_anchors_only() -> None:
    teacher = torch.zeros(1, 3, 4)
    scores = torch.tensor([[0.9, 0.2, 0.6]])
    student = torch.zeros(1, 3, 4)
    student[0, 0, 0] = 0.5  # confident: 0.5 * 0.5^2 = 0.125
    student[0, 1] = 100.0  # unconfident: ignored
    student[0, 2, 3] = 2.0  # confident: 2 - 0.5 = 1.5
    got = regression_kd(student, teacher, scores, threshold=0.5)
    assert got.item() == pytest.approx((0.125 + 1.5) / 2)
    student.requires_grad_()
    none = regression_kd(student, teacher, scores, threshold=0.95)
    none.backward()
    assert none.item() == 0 and torch.all(student.grad == 0)
    torch.testing.assert_close(regression_kd(teacher, teacher, scores, 0.5), ZERO)


def test_feature_imitation_is_masked_normalised_and_trains_adapters() -> None:
    torch.manual_seed(0)
    adapters = build_adapters([2], [3])
    student = torch.randn(1, 2, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0
    with torch.no_grad():
        teacher = adapters[0](student) + 5.0 * (1 - mask)  # differs only outside the mask
    loss = feature_imitation([student], [teacher], adapters, [mask])
    loss.backward()
    torch.testing.assert_close(loss.detach(), ZERO)
    assert torch.all(student.grad == 0)
    shifted = teacher + 1.0  # every masked cell off by 1 in every channel
    loss = feature_imitation([student], [shifted], adapters, [mask])
    assert loss.item() == pytest.approx(1.0)
    adapters.zero_grad()
    loss.backward()
    assert adapters[0].weight.grad.abs().sum() > 0 and adapters[0].bias.grad.abs().sum() > 0
    assert torch.all(student.grad[..., 2:, :] == 0) and torch.all(student.grad[..., :, 2:] == 0)
    empty = feature_imitation([student], [shifted], adapters, [torch.zeros_like(mask)])
    assert empty.item() == 0


def test_face_masks_by_hand() -> None:
    box = {"boxes": torch.tensor([[8 / 64, 8 / 64, 24 / 64, 24 / 64]]), "landmarks": None}
    empty = {"boxes": torch.zeros(0, 4), "landmarks": None}
    sizes = [(8, 8), (4, 4), (2, 2)]
    tight = face_masks([box, empty], sizes, (64, 64), margin=0.0)
    assert [tuple(m.shape) for m in tight] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]
    expected = torch.zeros(8, 8)
    expected[1:3, 1:3] = 1  # pixels 8..24 meet cells 1 and 2 of stride 8, not 0 or 3
    torch.testing.assert_close(tight[0][0, 0], expected)
    torch.testing.assert_close(tight[1][0, 0], torch.tensor([[1.0, 1, 0, 0]] * 2 + [[0.0] * 4] * 2))
    torch.testing.assert_close(tight[2][0, 0], torch.tensor([[1.0, 0], [0, 0]]))
    assert all(m[1].sum() == 0 for m in tight)
    wide = face_masks([box], sizes, (64, 64), margin=0.5, strides=(8, 16, 32))
    expected = torch.zeros(8, 8)
    expected[0:4, 0:4] = 1  # grown by 8 px per side: pixels 0..32
    torch.testing.assert_close(wide[0][0, 0], expected)


def test_alpha_zero_is_multibox_and_never_runs_the_teacher() -> None:
    torch.manual_seed(0)
    student = FeatherFaceNanoB(neck_channels=16)
    x = images()
    outputs = student(x)
    expected = MultiBoxLoss()(outputs, TARGETS, prior_boxes((SIZE, SIZE)))
    for teacher in (ExplodingTeacher(), None):
        loss = DistillationLoss(student, teacher, DistillationWeights(alpha=0.0))
        terms = loss(outputs, TARGETS, x)
        assert [p for p in loss.parameters() if p.requires_grad] == []
        assert torch.equal(terms["total"], expected.total)
        for key, value in zip(("loss_loc", "loss_cls", "loss_landm"), expected[1:], strict=True):
            assert torch.equal(terms[key], value)
        assert all(terms[key] == 0 for key in KD_KEYS)
    with pytest.raises(ValueError, match="teacher"):
        DistillationLoss(student, None)


def test_terms_vanish_for_a_copied_student_and_combine_as_documented() -> None:
    torch.manual_seed(0)
    teacher = FeatherFaceNanoB(neck_channels=16).eval()
    student = copy.deepcopy(teacher)
    weights = DistillationWeights(
        alpha=0.5, w_cls=2.0, w_box=3.0, w_landm=0.5, w_feat=4.0, confidence=0.0
    )
    loss = DistillationLoss(student, teacher, weights)
    identity_adapters(loss.adapters)
    x = images()
    terms = loss(student(x), TARGETS, x)
    for key in KD_KEYS:
        torch.testing.assert_close(terms[key], ZERO)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    outputs = student(x)
    terms = loss(outputs, TARGETS, x)
    assert all(terms[key] > 0 for key in KD_KEYS)
    distilled = 2.0 * terms["kd_cls"] + 3.0 * terms["kd_box"] + 0.5 * terms["kd_landm"]
    distilled = distilled + 4.0 * terms["kd_feat"]
    ground_truth = MultiBoxLoss()(outputs, TARGETS, prior_boxes((SIZE, SIZE))).total
    torch.testing.assert_close(terms["total"], ground_truth + 0.5 * distilled)
    with pytest.raises(RuntimeError, match="no features captured"):
        loss(outputs, TARGETS, x)  # no student forward since the last read: stale features


def test_student_under_autocast_gives_float32_terms() -> None:
    torch.manual_seed(0)
    student = FeatherFaceNanoB(neck_channels=16)
    loss = DistillationLoss(student, FeatherFaceV1())
    x = images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = student(x)
    terms = loss(type(outputs)(*(t.float() for t in outputs)), TARGETS, x)
    assert all(value.dtype == torch.float32 and torch.isfinite(value) for value in terms.values())
    terms["total"].backward()
    assert all(p.grad is not None for p in loss.adapters.parameters())


def test_teacher_is_frozen_and_stays_in_eval_mode() -> None:
    torch.manual_seed(0)
    teacher = FeatherFaceV1()
    loss = DistillationLoss(FeatherFaceNanoB(neck_channels=16), teacher).train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert loss.adapters is not None and loss.adapters.training
    assert [(a.in_channels, a.out_channels) for a in loss.adapters] == [(16, 64)] * 3
    # what the trainer optimises besides the student: the adapters, not the teacher
    assert {id(p) for p in loss.parameters() if p.requires_grad} == {
        id(p) for p in loss.adapters.parameters()
    }


def test_tiny_distillation_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    teacher = FeatherFaceV1()
    student = FeatherFaceNanoB(neck_channels=16).train()
    loss_fn = DistillationLoss(student, teacher, DistillationWeights(confidence=0.3))
    parameters = [*student.parameters(), *(p for p in loss_fn.parameters() if p.requires_grad)]
    optimiser = torch.optim.Adam(parameters, lr=5e-3)
    x = images()
    history = []
    for _ in range(15):
        terms = loss_fn(student(x), TARGETS, x)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        history.append({key: value.item() for key, value in terms.items()})
    assert all(math.isfinite(v) for step in history for v in step.values())
    assert history[0]["kd_feat"] > 0 and history[0]["kd_cls"] > 0
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert history[-1]["kd_feat"] < history[0]["kd_feat"]
