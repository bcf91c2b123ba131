"""The whole ``params.yaml`` (:class:`Params`) and its checked loading: unknown keys, wrong types
and out-of-range values are one-line :class:`~featherface.errors.ParamsError` naming the file and
the dotted key; so are a file that is not UTF-8 or not YAML.

A float key takes an int, or a string that Python's ``float()`` reads as a finite number: PyYAML
(YAML 1.1) reads ``1e-3`` (no dot) as a string, and a person writes it that way. NaN and the
infinities are rejected, written either way. Int keys take ints only (not bools, floats or
strings)."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from featherface.errors import ParamsError
from featherface.params.checks import FieldError
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
    if hint is float:
        return _float(value, key, source)
    if isinstance(hint, type) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ParamsError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    return value


def _float(value: Any, key: str, source: Path) -> float:
    """``value`` of the float key ``key`` as a finite float: a float, an int, or a string that
    ``float()`` reads (``"1e-3"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParamsError(f"{source}: {key} must be float, got {value!r}")
    try:
        number = float(value)
    except ValueError:  # a string that is no number
        raise ParamsError(f"{source}: {key} must be float, got {value!r}") from None
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise ParamsError(f"{source}: {key} must be a finite number, got {value!r}")
    return number


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass ``cls`` (resolving them is most of a load's time)."""
    return typing.get_type_hints(cls)


def build(cls: type, mapping: Any, source: Path, prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``mapping``, rejecting unknown keys and wrong types."""
    where = prefix or "top level"
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ParamsError(f"{source}: {where} must be a mapping, got {mapping!r}")
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names, key=str)  # YAML keys may be ints, bools, None, dates
    if unknown:
        dotted = [f"{prefix}.{key}" if prefix else str(key) for key in unknown]
        raise ParamsError(f"{source}: unknown key(s) {dotted}; known: {sorted(names)}")
    values = {
        name: _check_value(value, hints[name], f"{prefix}.{name}" if prefix else name, source)
        for name, value in mapping.items()
    }
    try:
        return cls(**values)
    except FieldError as error:  # a range check: name the dotted key
        key = f"{prefix}.{error.name}" if prefix else error.name
        raise ParamsError(f"{source}: {key} {error.problem}") from None
    except (TypeError, ValueError, ArithmeticError, ParamsError) as error:
        raise ParamsError(f"{source}: {where}: {_one_line(str(error))}") from None


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks included, as one space."""
    return " ".join(text.split())


def _yaml_problem(error: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The 1-based line (when known) and a one-line description of a PyYAML error."""
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, error.position) + 1
        character = error.character
        code = character if isinstance(character, int) else ord(character[:1] or "\0")
        return line, f"unacceptable character #x{code:04x}: {error.reason}"
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    return (mark.line + 1 if mark is not None else None), _one_line(str(problem))


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml``.

    Every problem of the file (missing, unreadable, not UTF-8, not YAML, unknown keys, wrong
    types, values out of range) is a one-line :class:`ParamsError` starting with ``path``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except OSError as error:
        raise ParamsError(
            f"{path}: cannot read ({_one_line(str(error.strerror or error))})"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
        line = raw.count(b"\n", 0, offset) + 1
        raise ParamsError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[offset]:02x} at offset {offset})"
        ) from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line, problem = _yaml_problem(error, text)
        where = f"{path}:{line}" if line is not None else f"{path}"
        raise ParamsError(f"{where}: not valid YAML ({problem})") from None
    except RecursionError:
        raise ParamsError(f"{path}: not valid YAML (nested too deeply)") from None
    except (ValueError, OverflowError) as error:  # a scalar PyYAML cannot build, e.g. 2001-02-30
        raise ParamsError(f"{path}: not valid YAML ({_one_line(str(error))})") from None
    return build(Params, content, path)


def section_dict(section: Any) -> dict[str, Any]:
    """A section as a plain nested dict (for logging to MLflow and hashing)."""
    return dataclasses.asdict(section)
