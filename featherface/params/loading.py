"""The whole ``params.yaml`` (:class:`Params`) and its checked loading: unknown keys and wrong
types are one-line :class:`~featherface.errors.ParamsError` naming the file and dotted key."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from featherface.errors import ParamsError
from featherface.params.data import DataParams, ModelParams
from featherface.params.deploy import EvaluateParams, ExportParams, TrackingParams
from featherface.params.training import (
    DistillParams,
    FinetuneParams,
    LaunchParams,
    PruneParams,
    TrainParams,
)


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``."""

    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    launch: LaunchParams = field(default_factory=LaunchParams)
    teacher: TrainParams = field(default_factory=TrainParams)
    distill: DistillParams = field(default_factory=DistillParams)
    prune: PruneParams = field(default_factory=PruneParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    export: ExportParams = field(default_factory=ExportParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)


def _check_value(value: Any, hint: Any, key: str, source: Path) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, key)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ParamsError(
                f"{source}: {key} must be one of {typing.get_args(hint)}, got {value!r}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{source}: {key} must be a list, got {value!r}")
        (item,) = {arg for arg in typing.get_args(hint) if arg is not Ellipsis}
        return tuple(_check_value(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ParamsError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    return value


def build(cls: type, mapping: Any, source: Path, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``mapping``, rejecting unknown keys and wrong types."""
    where = prefix or "top level"
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ParamsError(f"{source}: {where} must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        dotted = [f"{prefix}.{key}" if prefix else str(key) for key in unknown]
        raise ParamsError(f"{source}: unknown key(s) {dotted}; known: {sorted(names)}")
    values = {
        name: _check_value(value, hints[name], f"{prefix}.{name}" if prefix else name, source)
        for name, value in mapping.items()
    }
    try:
        return cls(**values)
    except (TypeError, ValueError, ParamsError) as error:
        raise ParamsError(f"{source}: {where}: {error}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml``."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})"
        ) from None
    return build(Params, content, path)


def section_dict(section: Any) -> dict[str, Any]:
    """A section as a plain nested dict (for logging to MLflow and hashing)."""
    return dataclasses.asdict(section)
