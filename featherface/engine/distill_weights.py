"""The weights of the distillation loss (:mod:`featherface.engine.distill`), kept free of torch
so that the ``distill`` section of ``params.yaml`` can be built from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistillationWeights:
    """Weights of the distillation terms (see the module docstring for the total).

    alpha: weight of all distillation against the ground truth (0 disables the teacher);
    temperature: softmax temperature ``T`` of the classification term; w_cls, w_box, w_landm,
    w_feat: weights of ``kd_cls``, ``kd_box``, ``kd_landm``, ``kd_feat`` inside the distillation
    sum; confidence: teacher face probability at or above which an anchor takes part in box and
    landmark distillation; mask_margin: how far the feature-imitation mask reaches around each
    ground-truth face, as a fraction of the face's width (left and right) and height (top and
    bottom): 0 marks the cells the box overlaps, 0.5 those of a box twice as wide and high.
    """

    alpha: float = 1.0
    temperature: float = 4.0
    w_cls: float = 1.0
    w_box: float = 1.0
    w_landm: float = 1.0
    w_feat: float = 1.0
    confidence: float = 0.5
    mask_margin: float = 0.5

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        for name in ("alpha", "w_cls", "w_box", "w_landm", "w_feat", "mask_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @property
    def imitates_features(self) -> bool:
        """Whether ``kd_feat`` is used (``alpha > 0`` and ``w_feat > 0``)."""
        return self.alpha > 0 and self.w_feat > 0
