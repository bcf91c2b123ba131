"""The promotion rule of the model registry, as pure functions (no MLflow).

A candidate version becomes the ``champion`` when both hold:

- its hard AP does not fall more than ``tolerance`` (absolute AP, e.g. ``0.01`` = one AP point)
  below the hard AP recorded for the current champion; with no champion yet, this always holds;
- its true parameter count lies inside the parameter budget of the registered model.

Budgets (:func:`default_budget`): a pruned model (``featherface-nano-b``) must lie in the band
its pruning run aimed at, read from that run's ``plan.json`` (:func:`plan_budget`: the target
``(1 - prune.rate) * student parameters`` within ``prune.tolerance``); ``featherface-v1`` and
any other name have no budget unless one is given.

The candidate's figures come from the ``evaluate`` stage's ``metrics.json``
(:func:`read_candidate_metrics`): one entry per model key (``teacher``, ``student``, ``pruned``,
``onnx``), each with ``ap_hard`` and ``params_total``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featherface.errors import FeatherFaceError
from featherface.utils.jsonfile import read_json

# Below this, a drop in AP is floating-point noise rather than a regression.
_AP_EPSILON = 1e-9


@dataclass(frozen=True)
class ParamBudget:
    """Inclusive bounds on the true parameter count; ``None`` leaves a side open."""

    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self) -> None:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise FeatherFaceError(
                f"parameter budget: minimum {self.minimum:,} exceeds maximum {self.maximum:,}"
            )

    def describe(self) -> str:
        """The budget in words: ``120,000-180,000``, ``at most 180,000``, ``no budget``."""
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum:,}-{self.maximum:,}"
        if self.maximum is not None:
            return f"at most {self.maximum:,}"
        if self.minimum is not None:
            return f"at least {self.minimum:,}"
        return "no budget"

    def violation(self, params_total: int) -> str | None:
        """Why ``params_total`` is outside the budget, or ``None`` when it is inside."""
        if self.maximum is not None and params_total > self.maximum:
            return f"{params_total:,} parameters exceed the budget ({self.describe()})"
        if self.minimum is not None and params_total < self.minimum:
            return f"{params_total:,} parameters fall below the budget ({self.describe()})"
        return None


# Registered models whose budget is the parameter band of their pruning plan.
PRUNED_MODELS: frozenset[str] = frozenset({"featherface-nano-b"})


# Which entry of the evaluate stage's metrics.json holds each registered model's figures.
DEFAULT_MODEL_KEYS: dict[str, str] = {
    "featherface-nano-b": "pruned",
    "featherface-v1": "teacher",
}


def plan_budget(path: str | Path) -> ParamBudget:
    """The parameter band of a pruning plan (the ``prune`` stage's ``plan.json``): from
    ``ceil(target * (1 - tolerance))`` to ``floor(target * (1 + tolerance))`` with its
    ``target_params`` and ``tolerance``, the band the search aimed at."""
    path = Path(path)
    plan = read_json(path, "pruning plan not found")
    if not isinstance(plan, dict):
        raise FeatherFaceError(f"{path}: not a JSON object")
    target, tolerance = plan.get("target_params"), plan.get("tolerance")
    if not isinstance(target, int | float) or not isinstance(tolerance, int | float):
        raise FeatherFaceError(f"{path}: needs numbers 'target_params' and 'tolerance'")
    return ParamBudget(
        minimum=math.ceil(target * (1 - tolerance)), maximum=math.floor(target * (1 + tolerance))
    )


def default_budget(
    name: str,
    plan: Path | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> ParamBudget:
    """The budget of registered model ``name``, with ``minimum``/``maximum`` overriding its sides.

    A pruned model (:data:`PRUNED_MODELS`) takes the band of ``plan`` (:func:`plan_budget`);
    without a plan both sides must be given. Other names have no budget unless given one.
    """
    base = ParamBudget()
    if name in PRUNED_MODELS and (minimum is None or maximum is None):
        if plan is None or not plan.is_file():
            raise FeatherFaceError(
                f"{name}: no pruning plan ({plan}) to take the parameter budget from; "
                "give --plan, or both --min-params and --max-params"
            )
        base = plan_budget(plan)
    return ParamBudget(
        minimum=base.minimum if minimum is None else minimum,
        maximum=base.maximum if maximum is None else maximum,
    )


@dataclass(frozen=True)
class ModelRecord:
    """A registered model version as the promotion rule sees it."""

    version: str
    ap_hard: float
    params_total: int


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide_promotion`: whether to promote, and why."""

    promote: bool
    reason: str
    candidate: ModelRecord
    champion: ModelRecord | None


def _ap_reason(candidate: ModelRecord, champion: ModelRecord | None, tolerance: float) -> str:
    """The hard-AP part of an accepted decision's reason."""
    if champion is None:
        return f"no champion yet; hard AP {candidate.ap_hard:.4f}"
    return (
        f"hard AP {candidate.ap_hard:.4f} vs champion version {champion.version}'s "
        f"{champion.ap_hard:.4f} (tolerance {tolerance:.4f})"
    )


def decide_promotion(
    candidate: ModelRecord,
    champion: ModelRecord | None,
    tolerance: float,
    budget: ParamBudget,
) -> Decision:
    """Promote ``candidate`` over ``champion`` iff its hard AP is at least
    ``champion.ap_hard - tolerance`` and its parameter count is inside ``budget``.

    Every failed condition is named in the reason (joined by ``"; "``); an accepted decision's
    reason gives the compared figures.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise FeatherFaceError(f"tolerance must be a finite AP difference >= 0, got {tolerance}")
    failures = []
    if champion is not None:
        drop = champion.ap_hard - candidate.ap_hard
        if drop > tolerance + _AP_EPSILON:
            failures.append(
                f"hard AP {candidate.ap_hard:.4f} is {drop:.4f} below champion version "
                f"{champion.version}'s {champion.ap_hard:.4f} (tolerance {tolerance:.4f})"
            )
    over = budget.violation(candidate.params_total)
    if over is not None:
        failures.append(over)
    if failures:
        return Decision(False, "; ".join(failures), candidate, champion)
    size = f"{candidate.params_total:,} parameters ({budget.describe()})"
    return Decision(
        True, f"{_ap_reason(candidate, champion, tolerance)}; {size}", candidate, champion
    )


def _number(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FeatherFaceError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def read_candidate_metrics(path: str | Path, model_key: str) -> tuple[float, int]:
    """``(ap_hard, params_total)`` of entry ``model_key`` in the evaluate stage's metrics.json."""
    path = Path(path)
    if not path.is_file():
        raise FeatherFaceError(f"{path}: metrics file not found")
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FeatherFaceError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(document, dict):
        raise FeatherFaceError(
            f"{path}: expected an object of models, got {type(document).__name__}"
        )
    entry = document.get(model_key)
    if not isinstance(entry, dict):
        raise FeatherFaceError(f"{path}: no model {model_key!r}; the file has {sorted(document)}")
    where = f"{path}: {model_key}"
    return _number(entry, "ap_hard", where), int(_number(entry, "params_total", where))
