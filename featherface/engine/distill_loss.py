"""Knowledge distillation of a detector (the student, Nano-B) from a frozen one (the teacher, V1).

The student learns from the ground truth (the MultiBox loss of :mod:`featherface.engine.losses`)
and from the teacher's outputs and neck features on the same images::

    total = gt_total + alpha * (w_cls * kd_cls + w_box * kd_box + w_landm * kd_landm
                                + w_feat * kd_feat)

- ``kd_cls``: the soft-target loss of Hinton et al., "Distilling the Knowledge in a Neural
  Network", 2015, Sec. 2: ``T^2 * mean_anchors KL(softmax(z_t / T) || softmax(z_s / T))``.
- ``kd_box``, ``kd_landm``: smooth-L1 between the student's and the teacher's encoded boxes
  (landmarks) on the anchors the teacher scores as faces with probability ``>= confidence``.
- ``kd_feat``: fine-grained feature imitation (Wang et al., "Distilling Object Detectors with
  Fine-grained Feature Imitation", CVPR 2019, Sec. 3): a per-level 1x1 adapter maps the student's
  neck features to the teacher's channels and a squared error is taken only near faces.

The teacher runs inside the loss under ``torch.no_grad()`` on the student's input images; the
student's neck features come from a :class:`~featherface.models.features.NeckFeatureTap` on the
student, filled by the student forward that produced the outputs. ``alpha = 0`` is the
ground-truth-only ablation: no teacher forward, and the total equals the MultiBox loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featherface.detection.matching import target_tensors
from featherface.detection.priors import PriorConfig
from featherface.engine.losses import LossTerms, MultiBoxLoss
from featherface.models.features import NeckFeatureTap
from featherface.params import DistillationWeights

__all__ = [
    "DistillationLoss",
    "DistillationWeights",
    "build_adapters",
    "classification_kd",
    "face_masks",
    "feature_imitation",
    "regression_kd",
]

KD_KEYS = ("kd_cls", "kd_box", "kd_landm", "kd_feat")


def classification_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al. (2015) soft-target loss, a scalar.

    student_logits, teacher_logits: ``Tensor[B, A, 2]`` (background, face). With
    ``p = softmax(z_t / T)`` and ``q = softmax(z_s / T)`` per anchor::

        kd_cls = T^2 * mean_{b, a} sum_k p_k (log p_k - log q_k)

    The ``T^2`` keeps the gradient scale independent of ``T``. Zero when the logits are equal.
    """
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return kl.mean() * temperature**2


def regression_kd(
    student_loc: Tensor, teacher_loc: Tensor, teacher_scores: Tensor, threshold: float
) -> Tensor:
    """Smooth-L1 of the student's to the teacher's encoded regression on confident anchors.

    student_loc, teacher_loc: ``Tensor[B, A, D]`` (D = 4 boxes, 10 landmarks, in the codec of
    :mod:`featherface.detection.codec`); teacher_scores: ``Tensor[B, A]`` teacher face
    probability. With ``S = {(b, a): teacher_scores >= threshold}``::

        kd = sum_{(b, a) in S} sum_d smooth_l1(student - teacher) / max(|S|, 1)

    Zero when the regressions are equal on ``S`` or when ``S`` is empty.
    """
    confident = teacher_scores >= threshold
    count = confident.sum().clamp(min=1).to(student_loc.dtype)
    return (
        F.smooth_l1_loss(student_loc[confident], teacher_loc.detach()[confident], reduction="sum")
        / count
    )


def build_adapters(
    student_channels: Sequence[int], teacher_channels: Sequence[int]
) -> nn.ModuleList:
    """One 1x1 conv (with bias) per level, ``student_channels[l] -> teacher_channels[l]``."""
    if len(student_channels) != len(teacher_channels):
        raise ValueError(
            f"student has {len(student_channels)} levels, teacher {len(teacher_channels)}"
        )
    return nn.ModuleList(
        nn.Conv2d(s, t, kernel_size=1)
        for s, t in zip(student_channels, teacher_channels, strict=True)
    )


def feature_imitation(
    student_features: Sequence[Tensor],
    teacher_features: Sequence[Tensor],
    adapters: nn.ModuleList,
    masks: Sequence[Tensor],
) -> Tensor:
    """Masked feature imitation (Wang et al., CVPR 2019, Eq. 2), a scalar.

    Per level ``l``: student ``s_l: Tensor[B, C_s, H_l, W_l]``, teacher ``t_l: Tensor[B, C_t, H_l,
    W_l]``, adapter ``f_l`` (1x1 conv ``C_s -> C_t``), mask ``m_l: Tensor[B, 1, H_l, W_l]`` (1 near
    faces, 0 elsewhere)::

        kd_feat = sum_l sum_{b, h, w} m_l * mean_c (f_l(s_l) - t_l)^2 / max(sum_l sum m_l, 1)

    Wang et al. sum over channels and halve; the channel mean here keeps the scale independent of
    the teacher's width. Zero when every mask is empty; cells outside the masks add nothing.
    """
    if not len(student_features) == len(teacher_features) == len(adapters) == len(masks):
        raise ValueError(
            f"levels differ: {len(student_features)} student, {len(teacher_features)} teacher, "
            f"{len(adapters)} adapters, {len(masks)} masks"
        )
    error = student_features[0].new_zeros(())
    area = student_features[0].new_zeros(())
    for student, teacher, adapt, mask in zip(
        student_features, teacher_features, adapters, masks, strict=True
    ):
        if student.shape[-2:] != teacher.shape[-2:]:
            raise ValueError(
                f"student level {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ "
                "in size"
            )
        squared = (adapt(student) - teacher.detach()).pow(2).mean(dim=1, keepdim=True)
        error = error + (squared * mask).sum()
        area = area + mask.sum()
    return error / area.clamp(min=1)


def _cell_overlap(low: Tensor, high: Tensor, cells: int, step: float) -> Tensor:
    """``Tensor[F, cells]`` bool: cell ``k`` (pixels ``[k * step, (k + 1) * step)``) meets the
    open interval ``(low[f], high[f])``.
    """
    starts = torch.arange(cells, device=low.device, dtype=low.dtype) * step
    return (starts[None, :] < high[:, None]) & (starts[None, :] + step > low[:, None])


def face_masks(
    targets: Sequence[Any],
    feature_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    margin: float,
    strides: Sequence[int] | None = None,
) -> list[Tensor]:
    """Feature-imitation masks: ``[Tensor[B, 1, H_l, W_l]]`` float, 1 on the cells that meet an
    expanded ground-truth face, 0 elsewhere.

    targets: ``B`` targets with ``boxes Tensor[F, 4]`` normalised ``(x1, y1, x2, y2)`` (see
    :func:`~featherface.detection.matching.target_tensors`); feature_sizes: ``(H_l, W_l)`` per
    level; image_size: input ``(height, width)``; margin: each box grows by ``margin * width`` on
    the left and right and ``margin * height`` on top and bottom; strides: cell size per level in
    pixels (default ``image_size / feature_size``, exact when the sides divide). Cell ``(i, j)`` of
    stride ``s`` covers pixels ``[j s, (j + 1) s) x [i s, (i + 1) s)``; it is marked when that
    square overlaps an expanded box with positive area.
    """
    height, width = image_size
    boxes = []
    for target in targets:
        box = target_tensors(target)[0].to(torch.float32).reshape(-1, 4)
        box = box * box.new_tensor([width, height, width, height])
        grow = margin * torch.cat([box[:, 2:] - box[:, :2]] * 2, dim=1)
        boxes.append(box + grow * box.new_tensor([-1.0, -1.0, 1.0, 1.0]))
    masks = []
    for level, (rows, cols) in enumerate(feature_sizes):
        step_y = float(strides[level]) if strides is not None else height / rows
        step_x = float(strides[level]) if strides is not None else width / cols
        per_image = []
        for box in boxes:
            in_rows = _cell_overlap(box[:, 1], box[:, 3], rows, step_y)  # [F, rows]
            in_cols = _cell_overlap(box[:, 0], box[:, 2], cols, step_x)  # [F, cols]
            cells = (in_rows[:, :, None] & in_cols[:, None, :]).any(dim=0)
            per_image.append(cells.to(torch.float32)[None])
        masks.append(torch.stack(per_image))
    return masks


class DistillationLoss(nn.Module):
    """Ground truth plus distillation from a frozen teacher (module docstring for the formulas).

    ``loss(outputs, targets, images) -> dict[str, Tensor]``, the trainer's loss callable: call it
    right after ``outputs = student(images)``. Keys: ``total``; ``loss_loc``, ``loss_cls``,
    ``loss_landm`` (ground truth, unweighted, as :class:`MultiBoxLoss`); ``kd_cls``, ``kd_box``,
    ``kd_landm``, ``kd_feat`` (unweighted; 0 when ``alpha = 0``, ``kd_feat`` also 0 when
    ``w_feat = 0``).

    Construction taps the student's and the teacher's neck features (only when ``kd_feat`` is
    used), builds the 1x1 adapters from the tapped channel lists, and freezes the teacher
    (``requires_grad_(False)``, kept in eval mode by :meth:`train`); the passed teacher object is
    modified. The teacher is a submodule (``.to(device)`` moves it); the student is not. The
    adapters train with the student: the :class:`~featherface.engine.trainer.Trainer` optimises
    the parameters of a loss that is an ``nn.Module`` together with the network's, and the
    frozen teacher's take no gradient.
    ``teacher`` may be ``None`` only when ``alpha = 0``. Priors follow ``prior_config`` (the
    default layout unless given), which must be the student's and the teacher's.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        weights: DistillationWeights | None = None,
        multibox: MultiBoxLoss | None = None,
        prior_config: PriorConfig | None = None,
    ) -> None:
        super().__init__()
        self.weights = weights if weights is not None else DistillationWeights()
        self.multibox = multibox if multibox is not None else MultiBoxLoss()
        self.prior_config = prior_config if prior_config is not None else PriorConfig()
        if teacher is None and self.weights.alpha > 0:
            raise ValueError("a teacher is needed when alpha > 0")
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        self.student_tap: NeckFeatureTap | None = None
        self.teacher_tap: NeckFeatureTap | None = None
        self.adapters: nn.ModuleList | None = None
        if self.weights.imitates_features and teacher is not None:
            self.student_tap = NeckFeatureTap(student)
            self.teacher_tap = NeckFeatureTap(teacher)
            self.adapters = build_adapters(self.student_tap.channels, self.teacher_tap.channels)

    def train(self, mode: bool = True) -> Self:
        """Set the train/eval mode of the adapters; the teacher always stays in eval mode."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def remove_taps(self) -> None:
        """Unregister the feature hooks from the student and the teacher."""
        for tap in (self.student_tap, self.teacher_tap):
            if tap is not None:
                tap.remove()

    def forward(
        self,
        outputs: tuple[Tensor, Tensor, Tensor],
        targets: Sequence[Any],
        images: Tensor,
        student_features: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """outputs: the student's ``RawOutputs`` on images ``Tensor[B, 3, H, W]``; targets: ``B``
        targets as :class:`MultiBoxLoss`; student_features: its neck features, read from the
        student tap when ``None``. Returns the loss dict (class docstring).
        """
        priors = self.prior_config.prior_boxes((images.shape[-2], images.shape[-1]))
        ground_truth: LossTerms = self.multibox(outputs, targets, priors)
        terms = {
            "total": ground_truth.total,
            "loss_loc": ground_truth.loc,
            "loss_cls": ground_truth.cls,
            "loss_landm": ground_truth.landm,
        }
        if self.weights.alpha == 0 or self.teacher is None:
            return terms | dict.fromkeys(KD_KEYS, ground_truth.total.new_zeros(()))
        with torch.no_grad():
            teacher_outputs = self.teacher(images)
            teacher_features = self.teacher_tap.take() if self.teacher_tap is not None else None
        kd = self._output_terms(outputs, teacher_outputs)
        kd["kd_feat"] = self._feature_term(student_features, teacher_features, targets, images)
        w = self.weights
        weighted = (
            w.w_cls * kd["kd_cls"]
            + w.w_box * kd["kd_box"]
            + w.w_landm * kd["kd_landm"]
            + w.w_feat * kd["kd_feat"]
        )
        terms["total"] = ground_truth.total + w.alpha * weighted
        return terms | kd

    def _output_terms(
        self, outputs: tuple[Tensor, Tensor, Tensor], teacher_outputs: tuple[Tensor, Tensor, Tensor]
    ) -> dict[str, Tensor]:
        """``kd_cls``, ``kd_box``, ``kd_landm`` (unweighted) of the student's to the teacher's
        outputs.
        """
        loc, conf, landm = outputs
        t_loc, t_conf, t_landm = teacher_outputs
        scores = t_conf.detach().softmax(dim=-1)[..., 1]
        w = self.weights
        return {
            "kd_cls": classification_kd(conf, t_conf, w.temperature),
            "kd_box": regression_kd(loc, t_loc, scores, w.confidence),
            "kd_landm": regression_kd(landm, t_landm, scores, w.confidence),
        }

    def _feature_term(
        self,
        student_features: Sequence[Tensor] | None,
        teacher_features: Sequence[Tensor] | None,
        targets: Sequence[Any],
        images: Tensor,
    ) -> Tensor:
        """``kd_feat`` (unweighted), 0 without feature imitation."""
        if teacher_features is None or self.adapters is None or self.student_tap is None:
            return images.new_zeros(())
        if student_features is None:
            student_features = self.student_tap.take()
        # A student run under autocast taps half-precision features; the loss is float32.
        student_features = [f.to(teacher_features[0].dtype) for f in student_features]
        image_size = (images.shape[-2], images.shape[-1])
        sizes = [(f.shape[-2], f.shape[-1]) for f in teacher_features]
        masks = face_masks(
            targets, sizes, image_size, self.weights.mask_margin, self.prior_config.steps
        )
        masks = [m.to(teacher_features[0]) for m in masks]
        return feature_imitation(student_features, teacher_features, self.adapters, masks)
