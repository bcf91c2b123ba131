"""Precise-BN re-estimation: equal-weight averages of the batch statistics, nothing else touched."""

from __future__ import annotations

import torch
from torch import nn

from featherface.engine.batchnorm import batchnorm_layers, recalibrate_batchnorm


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.01), nn.ReLU(), nn.BatchNorm2d(4)
    )


def test_statistics_are_the_plain_average_of_the_batch_statistics() -> None:
    model = _model().eval()
    batches = [torch.randn(5, 3, 8, 8) * (i + 1) + i for i in range(3)]
    used = recalibrate_batchnorm(model, iter(batches + batches), 3, lambda b: b)
    assert used == 3
    features = [model[0](b) for b in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features])
    bn = model[1]
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), rtol=1e-4)
    assert bn.momentum == 0.01 and model[3].momentum == 0.1  # momenta restored
    assert not model.training  # mode restored
    assert int(bn.num_batches_tracked) == 3


def test_weights_are_unchanged_and_nothing_runs_without_batches() -> None:
    model = _model()
    weights = [p.clone() for p in model.parameters()]
    before = [layer.running_mean.clone() for layer in batchnorm_layers(model)]
    assert recalibrate_batchnorm(model, [], 5, lambda b: b) == 0
    assert recalibrate_batchnorm(model, [torch.randn(2, 3, 8, 8)], 0, lambda b: b) == 0
    after = [layer.running_mean for layer in batchnorm_layers(model)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    recalibrate_batchnorm(model, [torch.randn(2, 3, 8, 8)], 1, lambda b: b)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert not torch.equal(before[0], batchnorm_layers(model)[0].running_mean)
