"""The Bayesian search of B-FPGM (Kaparinos and Mezaris, WACVW 2025, Sec. 3.2): Gaussian-process
minimisation (``skopt.gp_minimize``, expected improvement) over one FPGM pruning rate per layer
group.

With ``r`` the six rates, ``P(r)`` the true parameter count of the student once the FPGM plan at
``r`` is removed, ``P* = (1 - rate) * P(0)`` the target and ``L(r)`` the held-out loss of the
student soft-pruned at ``r`` and briefly fine-tuned, the objective is::

    f(r) = L(r) / L(0) + penalty * max(0, |P(r) - P*| / P* - tolerance)

so a plan inside the band ``P* (1 +- tolerance)`` is judged by its loss alone (relative to the
unpruned student's), and one outside pays in proportion to how far it misses.

Six rates leave the band a thin surface in ``[0, max_rate]^6``, and few random points land on it.
So the search point is read as the *shape* of a plan: before a trial it is scaled by one factor
into the band (:func:`fit_to_budget`), and the trial is run and recorded at the scaled rates. Every
trial is then a candidate, and the Gaussian process learns how the split of the pruning between
the groups changes the loss. The penalty still applies where no scaling reaches the band (a target
below the count with every group at ``max_rate``).
"""

from __future__ import annotations

import time
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
    seconds: float = 0.0

    def row(self) -> dict[str, float]:
        """Flat record for ``trials.csv``: trial, one column per rate, params, loss, objective
        and the trial's wall time in seconds (projection into the band included)."""
        return {
            "trial": self.number,
            **{f"rate_{name}": self.rates[name] for name in LAYER_GROUPS},
            "params": self.params,
            "loss": self.loss,
            "objective": self.objective,
            "seconds": round(self.seconds, 2),
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
    project: Callable[[Rates], Rates] | None = None,
) -> list[Trial]:
    """Minimise the objective over rates in ``[0, max_rate]^6`` with ``skopt.gp_minimize``
    (expected improvement, ``min(n_calls, 5)`` random starts); ``evaluate(rates)`` returns
    ``(params, loss)`` of a plan. ``project`` maps a search point to the plan that is run (for
    example :func:`fit_to_budget`); the trial records the projected rates, and a plan met before
    is not evaluated again. Returns every trial in order; ``on_trial`` sees each as it ends (for
    logging)."""
    from skopt import gp_minimize
    from skopt.space import Real

    names = list(LAYER_GROUPS)
    trials: list[Trial] = []
    scored: dict[tuple[float, ...], tuple[int, float]] = {}

    def objective(point: list[float]) -> float:
        start = time.perf_counter()
        rates = {name: float(value) for name, value in zip(names, point, strict=True)}
        if project is not None:
            rates = project(rates)
        key = tuple(round(rates[name], 6) for name in names)
        if key not in scored:  # distinct points can project onto one plan: score it once
            scored[key] = evaluate(rates)
        params, loss = scored[key]
        value = objective_value(loss, base_loss, params, budget, penalty)
        trial = Trial(len(trials), rates, params, loss, value, time.perf_counter() - start)
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
    """Scale every rate by one factor ``s`` (rates capped at ``max_rate``, rates below
    ``0.02 * max_rate`` raised to it first) until ``count`` lands in the band; returns ``rates``
    unchanged when it already does, and the plan at the nearest ``s`` tried when ``steps`` calls
    of ``count`` do not reach the band (then every rate is at the cap, or the band is too thin).

    ``count`` falls as ``s`` grows, so ``s`` is bracketed in ``[0, max_rate / min(rates)]`` (at the
    upper end every rate is capped) and found by false position with the Illinois step (the
    bracket end kept twice in a row has its count's distance to the target halved). On the
    Nano-B student's true count (piecewise, flat where rates hit the cap) this took 5 to 8
    counts after the two bracket ends, against 4 to 5 for plain bisection, in one check of six
    random shapes.
    """
    params = count(dict(rates))
    if budget.miss(params) == 0.0:
        return dict(rates)
    floor = 0.02 * max_rate  # a group at rate 0 can still take a share of the scaling
    shape = {name: max(value, floor) for name, value in rates.items()}

    def scaled(scale: float) -> Rates:
        return {name: min(max_rate, value * scale) for name, value in shape.items()}

    # g(s) = count(s) - target falls with s; g(low) > 0 > g(high) once bracketed
    low, high = 0.0, max_rate / min(shape.values())
    g_low = count(scaled(low)) - budget.target
    top = scaled(high)
    g_high = count(top) - budget.target
    if g_high >= 0 or g_low <= 0:  # out of reach: every rate capped still too many (or none)
        return top if g_high >= 0 else scaled(low)
    best, best_miss = top, budget.miss(round(g_high + budget.target))
    kept = 0  # +1 when ``low`` was kept on the last step, -1 when ``high`` was
    for _ in range(steps):
        scale = (low * g_high - high * g_low) / (g_high - g_low)
        plan = scaled(scale)
        g = count(plan) - budget.target
        miss = budget.miss(round(g + budget.target))
        if miss < best_miss:
            best, best_miss = plan, miss
        if miss == 0.0:
            break
        if g > 0:
            low, g_low = scale, g
            if kept == -1:
                g_high /= 2
            kept = -1
        else:
            high, g_high = scale, g
            if kept == 1:
                g_low /= 2
            kept = 1
    return best
