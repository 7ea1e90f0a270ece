"""Allocation from per-layer error curves: the DP against brute force over every combination of options,
the linear relaxation below every feasible allocation, coarse units still within the budget, bad input."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rcprune import InvalidInstanceError
from rcprune.network.curve_allocation import allocate_by_curves


@st.composite
def curves_and_budget(draw):
    layers = draw(st.integers(1, 4))
    curves = {}
    for i in range(layers):
        n = draw(st.integers(1, 4))
        counts = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
        errors = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=n, max_size=n))
        curves[f"l{i}"] = (counts, errors)
    least = sum(min(k) for k, _ in curves.values())
    budget = draw(st.integers(least, least + 30))
    return curves, budget


def _brute(curves, budget):
    best = np.inf
    for combo in itertools.product(*[list(zip(*c)) for c in curves.values()]):
        if sum(k for k, _ in combo) <= budget:
            best = min(best, sum(e for _, e in combo))
    return best


@given(curves_and_budget())
def test_the_dp_is_the_brute_force_optimum_and_the_bound_is_below_it(case):
    curves, budget = case
    res = allocate_by_curves(curves, budget, unit=1)
    best = _brute(curves, budget)
    assert res.error == pytest.approx(best, abs=1e-9)
    assert sum(res.counts.values()) <= budget
    for name, (k, e) in curves.items():   # each count is one of the layer's options, at the error claimed
        assert res.counts[name] in k
    assert res.error == pytest.approx(sum(min(e for kk, e in zip(*curves[n]) if kk == res.counts[n])
                                          for n in curves), abs=1e-9)
    assert res.lower_bound <= best + 1e-9 and res.gap >= -1e-9


@given(curves_and_budget(), st.integers(2, 5))
def test_coarse_units_stay_within_the_budget_and_above_the_bound(case, unit):
    curves, budget = case
    res = allocate_by_curves(curves, budget, unit=unit)
    assert sum(res.counts.values()) <= budget
    assert res.error >= _brute(curves, budget) - 1e-9 >= res.lower_bound - 2e-9


@given(curves_and_budget(), st.data())
def test_spends_other_than_counts(case, data):
    curves, budget = case
    # spends proportional to the counts with the matching unit: the same answer as the counts
    halves = {n: np.asarray(k) * 0.5 for n, (k, _) in curves.items()}
    res = allocate_by_curves(curves, budget, unit=1)
    half = allocate_by_curves(curves, budget * 0.5, spends=halves, unit=0.5)
    assert half.error == pytest.approx(res.error, abs=1e-9) and half.spend == pytest.approx(res.spend * 0.5)
    # any spends: feasible, above the brute-force optimum, which is above the bound
    spends = {n: np.array(data.draw(st.lists(st.floats(0, 5, allow_nan=False), min_size=len(k), max_size=len(k))))
              for n, (k, _) in curves.items()}
    least = sum(float(np.min(v)) for v in spends.values())
    limit = least + data.draw(st.floats(0, 10, allow_nan=False))
    got = allocate_by_curves(curves, limit, spends=spends)
    best = np.inf
    for combo in itertools.product(*[list(zip(spends[n], curves[n][1])) for n in curves]):
        if sum(c for c, _ in combo) <= limit + 1e-9:
            best = min(best, sum(e for _, e in combo))
    assert got.spend <= limit + 1e-6 and got.error >= best - 1e-9 and got.lower_bound <= best + 1e-9
    chosen = sum(float(np.min(np.asarray(spends[n])[(np.asarray(curves[n][0]) == got.counts[n])
                                                    & np.isclose(curves[n][1], curves[n][1])]))
                 for n in curves)
    assert chosen <= got.spend + 1e-9


def test_convex_curves_meet_their_linear_relaxation():
    # convex curves with steps of one unit: the greedy on the hull is integral, so the gap is zero
    curves = {"a": (np.arange(5), [8.0, 4.0, 2.0, 1.0, 0.5]), "b": (np.arange(5), [6.0, 5.0, 4.5, 4.2, 4.0])}
    res = allocate_by_curves(curves, 5)
    assert res.counts == {"a": 4, "b": 1} and res.error == pytest.approx(5.5)
    assert res.gap == pytest.approx(0.0, abs=1e-12)


def test_a_large_budget_is_coarsened_and_stays_feasible():
    rng = np.random.default_rng(0)
    curves = {f"l{i}": (np.linspace(0, 10**6, 30).astype(int), np.sort(rng.random(30))[::-1]) for i in range(3)}
    res = allocate_by_curves(curves, 1_500_000)
    assert res.unit == 8 and sum(res.counts.values()) <= 1_500_000   # 1.5 M above the cheapest (0) options and res.lower_bound <= res.error


@pytest.mark.parametrize("curves, budget, unit, match", [
    ({}, 3, None, "non-empty mapping"),
    ({"a": ([1, 2], [1.0])}, 3, None, "same non-zero length"),
    ({"a": ([1, 2], [1.0, np.nan])}, 3, None, "NaN"),
    ({"a": ([1, -2], [1.0, 0.0])}, 3, None, "non-negative integers"),
    ({"a": ([1.5, 2], [1.0, 0.0])}, 3, None, "non-negative integers"),
    ({"a": ([1, 2], [1.0, -1.0])}, 3, None, "negative error"),
    ({"a": ([4, 5], [1.0, 0.0])}, 3, None, "below the least the curves allow, 4"),
    ({"a": ([1, 2], [1.0, 0.0])}, -1, None, "budget must be"),
    ({"a": ([1, 2], [1.0, 0.0])}, 3, 0, "unit must be"),
    ({"a": 5}, 3, None, "must be a pair"),
])
def test_bad_input_is_named(curves, budget, unit, match):
    with pytest.raises(InvalidInstanceError, match=match):
        allocate_by_curves(curves, budget, unit=unit)


@pytest.mark.parametrize("spends, budget, match", [
    ({"b": [1.0, 2.0]}, 3.0, "same layers"),
    ({"a": [1.0]}, 3.0, "must be 2 finite non-negative numbers, one per option"),
    ({"a": [1.0, -2.0]}, 3.0, "non-negative"),
    ({"a": [1.0, np.inf]}, 3.0, "finite"),
    ({"a": [1.0, 2.0]}, np.nan, "budget must be"),
    ({"a": [4.0, 5.0]}, 3.0, "below the least the curves allow, 4 "),
])
def test_bad_spends_are_named(spends, budget, match):
    with pytest.raises(InvalidInstanceError, match=match):
        allocate_by_curves({"a": ([1, 2], [1.0, 0.0])}, budget, spends=spends)
