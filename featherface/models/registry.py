"""A registry of detector builders, in the manner of timm: ``@register_model`` on a builder,
``build_model(name, **overrides)`` everywhere else. A duplicate name is an error, and so is an
override the builder does not take (builders use explicit keyword arguments, never ``**kwargs``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from featherface.errors import FeatherFaceError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

# Modules whose import registers builders; imported on first use so that importing the registry
# alone stays cheap and free of cycles.
_MODEL_MODULES: tuple[str, ...] = (
    "featherface.models.featherface_v1",
    "featherface.models.retinaface",
    "featherface.models.nano_b",
)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``name``; a second registration of a name fails."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


def _load_all() -> None:
    for module in _MODEL_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_all()
    return sorted(_BUILDERS)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build model ``name``; ``overrides`` must be keyword arguments of its builder."""
    _load_all()
    if name not in _BUILDERS:
        raise FeatherFaceError(f"unknown model {name!r}; known: {sorted(_BUILDERS)}")
    builder = _BUILDERS[name]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise FeatherFaceError(
            f"model {name!r} takes no option(s) {unknown}; known: {sorted(accepted)}"
        )
    return builder(**overrides)
