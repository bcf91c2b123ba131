"""The Bayesian search of B-FPGM (Kaparinos and Mezaris, WACVW 2025, Sec. 3.2): Gaussian-process
minimisation (``skopt.gp_minimize``, expected improvement) over one FPGM pruning rate per layer
group.

With ``r`` the six rates, ``P(r)`` the true parameter count of the student once the FPGM plan at
``r`` is removed, ``P* = (1 - rate) * P(0)`` the target and ``L(r)`` the held-out loss of the
student soft-pruned at ``r`` and briefly fine-tuned, the objective is::

    f(r) = L(r) / L(0) + penalty * max(0, |P(r) - P*| / P* - tolerance)

so a plan inside the band ``P* (1 +- tolerance)`` is judged by its loss alone (relative to the
unpruned student's), and one outside pays in proportion to how far it misses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from featherface.prune.groups import LAYER_GROUPS

Rates = dict[str, float]


@dataclass(frozen=True)
class Budget:
    """The target band: ``target`` parameters, within ``tolerance`` (a fraction) of it."""

    target: float
    tolerance: float

    def miss(self, params: int) -> float:
        """How far ``params`` lies outside the band, as a fraction of the target (0 inside)."""
        return max(0.0, abs(params - self.target) / self.target - self.tolerance)


def objective_value(
    loss: float, base_loss: float, params: int, budget: Budget, penalty: float
) -> float:
    """``f = loss / base_loss + penalty * budget.miss(params)`` (see the module docstring)."""
    return loss / base_loss + penalty * budget.miss(params)


@dataclass(frozen=True)
class Trial:
    """One evaluated plan."""

    number: int
    rates: Rates
    params: int
    loss: float
    objective: float

    def row(self) -> dict[str, float]:
        """Flat record for ``trials.csv``: trial, one column per rate, params, loss, objective."""
        return {
            "trial": self.number,
            **{f"rate_{name}": self.rates[name] for name in LAYER_GROUPS},
            "params": self.params,
            "loss": self.loss,
            "objective": self.objective,
        }


def search_rates(
    evaluate: Callable[[Rates], tuple[int, float]],
    base_loss: float,
    budget: Budget,
    penalty: float,
    n_calls: int,
    max_rate: float,
    seed: int,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Minimise the objective over rates in ``[0, max_rate]^6`` with ``skopt.gp_minimize``
    (expected improvement, ``min(n_calls, 5)`` random starts); ``evaluate(rates)`` returns
    ``(params, loss)`` of a plan. Returns every trial in order; ``on_trial`` sees each as it
    ends (for logging)."""
    from skopt import gp_minimize
    from skopt.space import Real

    names = list(LAYER_GROUPS)
    trials: list[Trial] = []

    def objective(point: list[float]) -> float:
        rates = {name: float(value) for name, value in zip(names, point, strict=True)}
        params, loss = evaluate(rates)
        value = objective_value(loss, base_loss, params, budget, penalty)
        trial = Trial(len(trials), rates, params, loss, value)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        return value

    gp_minimize(
        objective,
        [Real(0.0, max_rate, name=name) for name in names],
        acq_func="EI",
        n_calls=n_calls,
        n_initial_points=min(n_calls, 5),
        random_state=seed,
    )
    return trials


def best_trial(trials: list[Trial], budget: Budget) -> Trial:
    """The trial of lowest objective among those inside the band, or of lowest objective when
    none is."""
    inside = [t for t in trials if budget.miss(t.params) == 0.0]
    return min(inside or trials, key=lambda t: t.objective)


def fit_to_budget(
    rates: Mapping[str, float],
    count: Callable[[Rates], int],
    budget: Budget,
    max_rate: float,
    steps: int = 16,
) -> Rates:
    """Scale every rate by one factor ``s`` (bisection on ``s``, rates capped at ``max_rate``,
    rates below ``0.02 * max_rate`` raised to it first) until ``count`` lands in the band;
    returns ``rates`` unchanged when it already does. The search's best plan can miss the band
    when the search is short; this keeps its proportions as far as the cap allows.
    """
    if budget.miss(count(dict(rates))) == 0.0:
        return dict(rates)
    floor = 0.02 * max_rate  # a group at rate 0 can still take a share of the scaling
    rates = {name: max(value, floor) for name, value in rates.items()}
    low, high = 0.0, max_rate / min(rates.values())  # at ``high`` every rate is at the cap
    best = dict(rates)
    for _ in range(steps):
        scale = (low + high) / 2
        scaled = {name: min(max_rate, value * scale) for name, value in rates.items()}
        params = count(scaled)
        best = scaled
        if budget.miss(params) == 0.0:
            break
        if params > budget.target:
            low = scale
        else:
            high = scale
    return best
