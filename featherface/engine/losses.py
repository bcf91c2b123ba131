"""The RetinaFace MultiBox loss: box regression, face/background classification with hard
negative mining, and landmark regression.

With ``N`` the number of positive priors in the batch (at least 1) and ``N_l`` the number of
positive priors whose face has landmarks (at least 1)::

    loc   = sum_{positives} smooth_l1(loc, t_box) / N
    cls   = sum_{positives + hard negatives} cross_entropy(conf, label) / N
    landm = sum_{positives with landmarks} smooth_l1(landm, t_landm) / N_l
    total = loc_weight * loc + cls + landmark_weight * landm

Hard negatives, per image: the ``min(negative_ratio * positives, A - 1)`` background priors with
the largest background cross-entropy ``logsumexp(conf) - conf[0]``. An image without faces has no
positives, hence no hard negatives, and adds nothing to any term (as the original).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featherface.detection.codec import Variances
from featherface.detection.matching import match_batch
from featherface.detection.priors import DEFAULT_VARIANCES, PriorConfig


class LossTerms(NamedTuple):
    """Scalar loss tensors; ``loc`` and ``landm`` are before their weights, ``total`` after."""

    total: Tensor
    loc: Tensor
    cls: Tensor
    landm: Tensor


def hard_negative_mask(conf: Tensor, positive: Tensor, negative_ratio: int) -> Tensor:
    """``Tensor[B, A]`` bool: the hard negatives of each image.

    conf: ``Tensor[B, A, 2]`` logits; positive: ``Tensor[B, A]`` bool. Per image, the
    ``min(negative_ratio * num_pos, A - 1)`` non-positive priors of largest background loss
    ``logsumexp(conf) - conf[..., 0]`` (positives rank last and are never returned).
    """
    with torch.no_grad():
        background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
        background_loss = background_loss.masked_fill(positive, -1.0)
        order = background_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)
        num_neg = (negative_ratio * positive.sum(dim=1, keepdim=True)).clamp(
            max=positive.shape[1] - 1
        )
        return (rank < num_neg) & ~positive


class MultiBoxLoss(nn.Module):
    """RetinaFace training loss (see the module docstring for the formulas).

    Targets are matched with :func:`featherface.detection.matching.match_batch` at
    ``positive_iou`` / ``ignore_iou``; ``variances`` must equal the decoder's.
    """

    def __init__(
        self,
        positive_iou: float = 0.35,
        ignore_iou: float = 0.2,
        negative_ratio: int = 7,
        loc_weight: float = 2.0,
        landmark_weight: float = 1.0,
        variances: Variances = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        self.positive_iou = positive_iou
        self.ignore_iou = ignore_iou
        self.negative_ratio = negative_ratio
        self.loc_weight = loc_weight
        self.landmark_weight = landmark_weight
        self.variances = variances

    def forward(
        self,
        outputs: tuple[Tensor, Tensor, Tensor],
        targets: Sequence[Any],
        priors: Tensor,
    ) -> LossTerms:
        """outputs: ``(loc Tensor[B, A, 4], conf Tensor[B, A, 2] logits, landm Tensor[B, A, 10])``;
        targets: ``B`` mappings or objects with ``boxes Tensor[F, 4]`` normalised
        ``(x1, y1, x2, y2)`` and ``landmarks Tensor[F, 10]`` normalised, NaN where missing;
        priors: ``Tensor[A, 4]`` ``(cx, cy, w, h)``.
        """
        loc, conf, landm = outputs
        if len(targets) != loc.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {loc.shape[0]}")
        with torch.no_grad():
            matched = match_batch(
                targets, priors.to(loc), self.positive_iou, self.ignore_iou, self.variances
            )
        positive = matched.labels > 0
        with_landmarks = matched.landmark_valid
        num_pos = positive.sum().clamp(min=1).to(loc.dtype)
        num_landmarks = with_landmarks.sum().clamp(min=1).to(loc.dtype)

        loss_loc = (
            F.smooth_l1_loss(loc[positive], matched.boxes_encoded[positive], reduction="sum")
            / num_pos
        )
        loss_landm = (
            F.smooth_l1_loss(
                landm[with_landmarks], matched.landmarks_encoded[with_landmarks], reduction="sum"
            )
            / num_landmarks
        )
        selected = positive | hard_negative_mask(conf, positive, self.negative_ratio)
        loss_cls = (
            F.cross_entropy(conf[selected], matched.labels[selected], reduction="sum") / num_pos
        )
        total = self.loc_weight * loss_loc + loss_cls + self.landmark_weight * loss_landm
        return LossTerms(total=total, loc=loss_loc, cls=loss_cls, landm=loss_landm)


class DetectionLoss:
    """The MultiBox loss as a trainer loss: priors follow the input size of each batch.

    Returns ``{"total", "loss_loc", "loss_cls", "loss_landm"}`` (see :class:`MultiBoxLoss`).
    """

    def __init__(self, criterion: MultiBoxLoss, priors: PriorConfig | None = None) -> None:
        self.criterion = criterion
        self.priors = priors or PriorConfig()
        self._cache: dict[tuple[int, int, torch.device], Tensor] = {}

    def __call__(
        self, outputs: Any, targets: Sequence[Mapping[str, Tensor]], images: Tensor
    ) -> dict[str, Tensor]:
        height, width = images.shape[-2:]
        key = (int(height), int(width), images.device)
        if key not in self._cache:
            self._cache[key] = self.priors.prior_boxes((key[0], key[1])).to(images.device)
        terms = self.criterion(outputs, targets, self._cache[key])
        named = {f"loss_{name}": value for name, value in terms._asdict().items()}
        return {"total": named.pop("loss_total"), **named}
