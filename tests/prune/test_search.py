"""The B-FPGM objective, the Gaussian-process search and the budget fit, on a made-up model of
loss and parameter count."""

from __future__ import annotations

import pytest

from featherface.prune.groups import LAYER_GROUPS
from featherface.prune.search import (
    Budget,
    best_trial,
    fit_to_budget,
    objective_value,
    search_rates,
)

FULL = 1000


def fake_count(rates: dict[str, float]) -> int:
    """Each layer group holds a sixth of the parameters; a rate removes that share of it."""
    return round(FULL * (1 - sum(rates.values()) / len(LAYER_GROUPS)))


def test_budget_and_objective() -> None:
    budget = Budget(target=400, tolerance=0.03)
    assert budget.miss(400) == 0.0 and budget.miss(412) == 0.0
    assert budget.miss(440) == pytest.approx(0.07)
    assert objective_value(2.0, 1.0, 400, budget, penalty=10.0) == 2.0
    assert objective_value(2.0, 1.0, 440, budget, penalty=10.0) == pytest.approx(2.7)


def test_search_runs_every_call_and_prefers_the_band() -> None:
    budget = Budget(target=400, tolerance=0.03)

    def evaluate(rates: dict[str, float]) -> tuple[int, float]:
        # loss grows with the backbone rates: the search should shift pruning elsewhere
        loss = 1.0 + rates["backbone_late"] + rates["backbone_middle"]
        return fake_count(rates), loss

    seen = []
    trials = search_rates(evaluate, 1.0, budget, 10.0, 12, 0.9, seed=0, on_trial=seen.append)
    assert len(trials) == len(seen) == 12
    assert [t.number for t in trials] == list(range(12))
    assert all(0.0 <= r <= 0.9 for t in trials for r in t.rates.values())
    chosen = best_trial(trials, budget)
    assert chosen.objective == min(t.objective for t in trials if budget.miss(t.params) == 0.0) or (
        all(budget.miss(t.params) > 0 for t in trials)
    )
    assert set(trials[0].row()) == {
        "trial",
        *(f"rate_{n}" for n in LAYER_GROUPS),
        "params",
        "loss",
        "objective",
        "seconds",
    }


def test_fit_to_budget_scales_into_the_band() -> None:
    budget = Budget(target=600, tolerance=0.03)
    rates = dict.fromkeys(LAYER_GROUPS, 0.2)
    rates["neck"] = 0.4
    fitted = fit_to_budget(rates, fake_count, budget, 0.9)
    assert budget.miss(fake_count(fitted)) == 0.0
    ratio = fitted["neck"] / fitted["context"]
    assert ratio == pytest.approx(2.0)  # proportions kept
    inside = dict.fromkeys(LAYER_GROUPS, 0.4)
    assert fit_to_budget(inside, fake_count, budget, 0.9) == inside
    zeros = fit_to_budget(dict.fromkeys(LAYER_GROUPS, 0.0), fake_count, budget, 0.9)
    assert budget.miss(fake_count(zeros)) == 0.0


def test_fit_to_budget_needs_few_counts_and_says_when_out_of_reach() -> None:
    budget = Budget(target=430, tolerance=0.01)
    calls = []

    def counting(rates: dict[str, float]) -> int:
        calls.append(rates)
        # not linear in the rates: the bracket search must still converge
        return round(FULL * (1 - sum(r**1.5 for r in rates.values()) / len(LAYER_GROUPS)))

    shape = dict(zip(LAYER_GROUPS, (0.1, 0.5, 0.3, 0.05, 0.0, 0.2), strict=True))
    fitted = fit_to_budget(shape, counting, budget, 0.9)
    assert budget.miss(counting(fitted)) == 0.0
    assert len(calls) <= 12
    # every group capped still leaves more than the target: the capped plan comes back
    unreachable = Budget(target=50, tolerance=0.03)
    capped = fit_to_budget(shape, fake_count, unreachable, 0.9)
    assert capped == dict.fromkeys(LAYER_GROUPS, 0.9)


def test_projected_search_runs_every_trial_inside_the_band() -> None:
    budget = Budget(target=400, tolerance=0.03)

    def evaluate(rates: dict[str, float]) -> tuple[int, float]:
        return fake_count(rates), 1.0 + rates["backbone_late"]

    def project(rates: dict[str, float]) -> dict[str, float]:
        return fit_to_budget(rates, fake_count, budget, 0.9)

    calls = []

    def counted(rates: dict[str, float]) -> tuple[int, float]:
        calls.append(rates)
        return evaluate(rates)

    trials = search_rates(counted, 1.0, budget, 10.0, 8, 0.9, seed=1, project=project)
    assert all(budget.miss(t.params) == 0.0 for t in trials)
    distinct = {tuple(sorted(t.rates.items())) for t in trials}
    assert len(calls) == len(distinct)  # a plan met twice is scored once
    assert all(t.objective == pytest.approx(t.loss) for t in trials)  # no penalty paid
    # the search learns to spare the costly group: the best trial prunes it least of all
    best = best_trial(trials, budget)
    assert best.rates["backbone_late"] <= min(t.rates["backbone_late"] for t in trials[:5])
