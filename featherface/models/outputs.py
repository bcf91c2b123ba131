"""The raw output every detector returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class RawOutputs(NamedTuple):
    """Per-prior predictions, priors ordered level by level (stride 8, 16, 32), row-major over
    cells, then the anchors of a cell (the order of :func:`featherface.detection.priors.priors`).

    loc: ``Tensor[B, A, 4]`` encoded box offsets; conf: ``Tensor[B, A, 2]`` class logits
    (background, face; softmax them for scores); landm: ``Tensor[B, A, 10]`` encoded landmarks.
    """

    loc: Tensor
    conf: Tensor
    landm: Tensor
