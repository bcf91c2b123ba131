"""Converters from the original code bases' checkpoints to this package's models.

- ``featherface-v1``: state_dicts of the FeatherFace code (dohun-mat/FeatherFace, ``RetinaFace``
  with ``cfg_mnet``; 587 tensors, including the original's ``bacbkbone_*_cbam`` spelling).
- ``retinaface-mnet025``: state_dicts of biubug6/Pytorch_Retinaface with ``cfg_mnet``
  (300 tensors), with or without the ``module.`` prefix that ``nn.DataParallel`` adds.

Each source key is renamed by its module prefix (``ssh1.`` -> ``context.0.``) plus a few renames
inside the module (CBAM gates, the BiFPN's same-padding conv wrappers). Conversion is strict:
every source tensor must land on a target tensor of the same shape, and every target tensor must
be filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from torch import Tensor, nn

from featherface.errors import FeatherFaceError
from featherface.models.checkpoint import read_weights_file
from featherface.models.registry import build_model


class _Rule(NamedTuple):
    source: str
    target: str
    renames: tuple[tuple[str, str], ...] = ()


_CBAM_RENAMES = (
    ("ChannelGate.mlp.1.", "channel_gate.fc1."),
    ("ChannelGate.mlp.3.", "channel_gate.fc2."),
    ("SpatialGate.spatial.", "spatial_gate."),
)
# The original wraps each BiFPN conv in a same-padding module holding it as ``.conv``.
_BIFPN_RENAMES = (
    ("depthwise_conv.conv.", "depthwise_conv."),
    ("pointwise_conv.conv.", "pointwise_conv."),
    ("down_channel.0.conv.", "down_channel.0."),
    ("down_channel_2.0.conv.", "down_channel_2.0."),
)
_LEVELS = (0, 1, 2)


def _shared_rules() -> list[_Rule]:
    rules = [_Rule("body.", "backbone.")]
    for level in _LEVELS:
        rules.append(_Rule(f"ssh{level + 1}.", f"context.{level}."))
        for source, target in (
            ("BboxHead", "bbox"),
            ("ClassHead", "cls"),
            ("LandmarkHead", "landmark"),
        ):
            rules.append(_Rule(f"{source}.{level}.conv1x1.", f"head.{target}.{level}."))
    return rules


def _featherface_rules() -> list[_Rule]:
    rules = [*_shared_rules(), _Rule("bifpn.", "bifpn.", _BIFPN_RENAMES)]
    for level in _LEVELS:
        rules += [  # "bacbkbone" is the original code's spelling
            _Rule(f"bacbkbone_{level}_cbam.", f"backbone_attention.{level}.cbam.", _CBAM_RENAMES),
            _Rule(f"bif_cbam_{level}.", f"bifpn_attention.{level}.cbam.", _CBAM_RENAMES),
            _Rule(f"ssh{level + 1}_cs.", f"shuffle.{level}."),
        ]
    return rules


def _retinaface_rules() -> list[_Rule]:
    rules = _shared_rules()
    for level in _LEVELS:
        rules.append(_Rule(f"fpn.output{level + 1}.", f"fpn.lateral.{level}."))
    rules += [_Rule("fpn.merge1.", "fpn.merge.0."), _Rule("fpn.merge2.", "fpn.merge.1.")]
    return rules


_RULES = {"featherface-v1": _featherface_rules, "retinaface-mnet025": _retinaface_rules}


def _rename(key: str, rules: list[_Rule]) -> str | None:
    for rule in rules:
        if key.startswith(rule.source):
            rest = key[len(rule.source) :]
            for old, new in rule.renames:
                rest = rest.replace(old, new)
            return rule.target + rest
    return None


def _listing(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def convert_state_dict(arch: str, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map a state_dict in the original code's key layout onto model ``arch``'s keys.

    ``arch`` is ``"featherface-v1"`` or ``"retinaface-mnet025"``. A leading ``module.`` is
    dropped from every key. Raises :class:`FeatherFaceError` naming the unused source keys, the
    missing target keys or the first shape mismatch.
    """
    if arch not in _RULES:
        raise FeatherFaceError(f"no converter for {arch!r}; known: {sorted(_RULES)}")
    rules = _RULES[arch]()
    target = build_model(arch).state_dict()
    converted: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, tensor in state_dict.items():
        name = _rename(key.removeprefix("module."), rules)
        if name is None or name not in target or name in converted:
            unused.append(key)
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise FeatherFaceError(
                f"{arch}: {key} has shape {tuple(tensor.shape)}, "
                f"{name} needs {tuple(target[name].shape)}"
            )
        converted[name] = tensor
    missing = sorted(set(target) - set(converted))
    if unused or missing:
        raise FeatherFaceError(
            f"{arch}: checkpoint does not match: unused source keys {_listing(sorted(unused))}; "
            f"missing target keys {_listing(missing)}"
        )
    return converted


def load_reference_checkpoint(
    arch: str, path: str | Path, model: nn.Module | None = None
) -> nn.Module:
    """Load an original-layout checkpoint into ``model`` (default: ``build_model(arch)``).

    The file is read with ``torch.load(weights_only=True)``, so untrusted files are safe to open.
    Pass ``model`` to choose builder options, e.g.
    ``build_model("featherface-v1", deform_implementation="torchvision")``. The model's
    train/eval mode is left as it is.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatherFaceError(f"{path}: checkpoint not found")
    state_dict = read_weights_file(path)
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(value, Tensor) for value in state_dict.values()
    ):
        raise FeatherFaceError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    try:
        converted = convert_state_dict(arch, state_dict)
    except FeatherFaceError as error:
        raise FeatherFaceError(f"{path}: {error}") from None
    model = build_model(arch) if model is None else model
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise FeatherFaceError(f"{path}: weights do not fit the given model: {first}") from None
    return model
