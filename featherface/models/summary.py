"""The numbers ``featherface info`` prints: per-module parameters, GMACs, anchors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from featherface.models.complexity import mac_counts, params_paper, params_total


def model_summary(model: nn.Module, name: str, size: int = 640) -> dict[str, Any]:
    """A JSON-ready summary; the top level holds ``params_total``, ``params_paper`` and
    ``gmacs_<size>`` (``gmacs_640`` by default) plus ``anchors`` and a ``modules`` list."""
    total_macs, per_child = mac_counts(model, (size, size))
    modules = [
        {
            "name": child_name,
            "params_total": params_total(child),
            "params_paper": params_paper(child),
            "gmacs": round(per_child.get(child_name, 0.0), 6),
        }
        for child_name, child in model.named_children()
    ]
    model.eval()
    with torch.no_grad():
        anchors = int(model(torch.zeros(1, 3, size, size)).loc.shape[1])
    return {
        "model": name,
        "params_total": params_total(model),
        "params_paper": params_paper(model),
        f"gmacs_{size}": round(total_macs, 6),
        "anchors": anchors,
        "modules": modules,
    }
