"""Feature taps: the per-level neck features of a detector, read without changing its code.

The tapped tensors are the inputs of the SSH context modules, i.e. "P3..P5 after the neck"::

    FeatherFaceV1      bifpn_attention[l](P_l)   Tensor[B, 64, H_l, W_l]   (out_channels, 64)
    FeatherFaceNanoB   neck(...)[l]              Tensor[B, C, H_l, W_l]    (C = neck_channels, 48)
    RetinaFaceMNet     FPN level l               Tensor[B, 64, H_l, W_l]

with ``H_l = ceil(H / s_l)``, ``W_l = ceil(W / s_l)`` for strides ``s_l`` = 8, 16, 32. Every
registered detector keeps its context modules in an ``nn.ModuleList`` named ``context``, one per
level, each called once per forward on exactly that level's neck output, so a forward pre-hook on
``context[l]`` captures the same tensor as a forward hook on V1's ``bifpn_attention[l]`` or
Nano-B's ``neck_attention[l]``. The captured tensors are the live activations (not copies): a
student's carry its autograd graph, which is what feature imitation needs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from featherface.models.outputs import RawOutputs

__all__ = ["NeckFeatureTap", "context_modules", "neck_channels"]


def context_modules(model: nn.Module) -> nn.ModuleList:
    """The per-level context modules of ``model`` (its ``context`` ``nn.ModuleList``).

    Raises ``TypeError`` for a network without one, naming its class.
    """
    context = getattr(model, "context", None)
    if not isinstance(context, nn.ModuleList) or len(context) == 0:
        raise TypeError(
            f"{type(model).__name__} has no 'context' ModuleList of per-level context modules"
        )
    return context


def _input_channels(module: nn.Module) -> int:
    """Input channels of ``module``: those of the first ``nn.Conv2d`` it contains."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            return child.in_channels
    raise TypeError(f"{type(module).__name__} contains no Conv2d to read its input channels from")


def neck_channels(model: nn.Module) -> list[int]:
    """Channels of each tapped level, read from the context modules' first convolutions.

    ``[64, 64, 64]`` for FeatherFace V1, ``[neck_channels] * 3`` for Nano-B (48 by default); after
    physical pruning the counts are those of the pruned convolutions.
    """
    return [_input_channels(module) for module in context_modules(model)]


class NeckFeatureTap:
    """Captures the neck features ``[Tensor[B, C_l, H_l, W_l]]`` (l = 3, 4, 5) of every forward.

    ``tap = NeckFeatureTap(model)`` registers one forward pre-hook per context module; after
    ``model(images)`` the features are read with :meth:`take`, or ``tap(images)`` runs the model
    and returns ``(RawOutputs, features)``. The tap is a plain object, not a submodule: it adds no
    parameters and no state-dict entries. A deep copy of a tapped model copies the hooks too (and
    they write into this tap), so copy a model before tapping it, or :meth:`remove` the tap first.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.channels: list[int] = neck_channels(model)
        self._features: list[Tensor | None] = [None] * len(self.channels)
        self._handles: list[RemovableHandle] = [
            module.register_forward_pre_hook(self._hook(level))
            for level, module in enumerate(context_modules(model))
        ]

    def _hook(self, level: int) -> Any:
        def capture(_module: nn.Module, args: tuple[Any, ...]) -> None:
            self._features[level] = args[0]

        return capture

    @property
    def num_levels(self) -> int:
        """Number of tapped levels (3 for every registered detector)."""
        return len(self.channels)

    def take(self) -> list[Tensor]:
        """The features of the latest forward, level by level; clears them so that a later read
        without a new forward is an error rather than a silent reuse of stale tensors.
        """
        if any(feature is None for feature in self._features):
            raise RuntimeError(
                f"no features captured from {type(self.model).__name__} since the last read: "
                "run its forward before reading the tap"
            )
        features = [feature for feature in self._features if feature is not None]
        self._features = [None] * self.num_levels
        return features

    def __call__(self, images: Tensor) -> tuple[RawOutputs, list[Tensor]]:
        """Run the model on ``images`` ``Tensor[B, 3, H, W]``: ``(RawOutputs, features)``."""
        outputs = self.model(images)
        return outputs, self.take()

    def remove(self) -> None:
        """Unregister the hooks; the model runs as before the tap."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features = [None] * self.num_levels

    def __enter__(self) -> NeckFeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
