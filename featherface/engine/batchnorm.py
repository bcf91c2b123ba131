"""Re-estimation of BatchNorm statistics after training ("precise BN").

A BatchNorm layer in eval mode normalises with running estimates that are updated during
training as ``r <- (1 - m) r + m * batch_stat``. These estimates mix statistics of weights that no
longer exist: with FeatherFace's BiFPN and CBAM momentum ``m = 0.01`` they average over the last
few hundred steps, so after a short run the eval-mode network differs from the one that was
trained and its detections are far worse than its training loss suggests. Wu and Johnson,
"Rethinking 'Batch' in BatchNorm" (arXiv:2105.07576, 2021), Sec. 3 ("precise BN"), fix this by
recomputing the statistics with the final weights as an equal-weight average over ``N`` batches::

    mean = (1 / N) sum_i mean_i,    var = (1 / N) sum_i var_i   (unbiased per-batch variances)

which is what ``torch.nn`` BatchNorm computes with ``momentum=None`` (cumulative average) after
``reset_running_stats()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[Any],
    num_batches: int,
    to_images: Callable[[Any], Tensor],
) -> int:
    """Recompute every BatchNorm running mean and variance of ``model`` as the plain average over
    the first ``num_batches`` batches (see the module docstring); returns the batches used.

    ``to_images(batch)`` gives the network input of a batch (on the model's device). Only the
    BatchNorm buffers change; the layers' momenta and the model's train/eval mode are restored.
    With no BatchNorm layer, ``num_batches <= 0`` or an empty ``batches``, the statistics stay as
    they were and 0 is returned.
    """
    layers = batchnorm_layers(model)
    if not layers or num_batches <= 0:
        return 0
    momenta = [layer.momentum for layer in layers]
    saved = [(layer.running_mean.clone(), layer.running_var.clone()) for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    used = 0
    try:
        for batch in batches:
            if used >= num_batches:
                break
            model(to_images(batch))
            used += 1
    finally:
        for layer, momentum, (mean, var) in zip(layers, momenta, saved, strict=True):
            layer.momentum = momentum
            if used == 0:  # nothing seen: keep the old estimates rather than the reset ones
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
        model.train(was_training)
    return used
