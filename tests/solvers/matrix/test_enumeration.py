"""Exact enumeration: agreement with the brute force, the time-limit contract, and its refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rcprune
from rcprune import library
from rcprune.solvers.matrix import enumeration
from rcprune.solvers.matrix.enumeration import exact_enumeration
from rcprune.solvers.matrix.greedy_row_column import greedy_column_row, greedy_row_column
from tests.clock import simulated_clock
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances

budget_or_fixed_shape = st.one_of(instances(), instances(fixed_shape=True))


def _optimum(scores, budget) -> float:
    return brute_force(scores, budget=budget.get("budget"), shape=budget.get("shape"))[0]


@given(budget_or_fixed_shape)
def test_enumeration_matches_brute_force(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    res = exact_enumeration(inst)
    opt = _optimum(scores, budget)
    assert res.feasible
    assert res.cost == pytest.approx(opt, rel=1e-9, abs=1e-9)
    assert res.status == "optimal" and res.lower_bound == res.cost
    assert res.info["transposed"] == (inst.m > inst.n)
    assert 1 <= res.iterations <= 2 ** min(inst.m, inst.n)


@given(budget_or_fixed_shape)
def test_stopped_at_once_it_returns_a_valid_bound(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    res = exact_enumeration(inst, time_limit=1e-9)
    opt = _optimum(scores, budget)
    tol = 1e-9 * max(1.0, inst.total)
    assert res.feasible and res.cost >= opt - tol
    assert res.lower_bound <= opt + tol
    if res.status == "optimal":  # the size bounds alone proved the greedy start optimal
        assert res.cost <= opt + tol
    else:
        assert res.status == "time_limit" and not res.info["complete"]


def test_laplace_20x200_is_proven_optimal():
    inst = library.get("laplace-20x200")
    res = exact_enumeration(inst)
    print(f"\nlaplace-20x200: {res.runtime:.2f} s, {res.iterations} subsets, cost {res.cost}")
    assert res.status == "optimal" and res.lower_bound == res.cost
    assert res.cost <= greedy_row_column(inst).cost
    assert res.kept_count <= inst.budget


def test_time_limit_contract(monkeypatch):
    """Simulated clock: each subset takes 1 us. The chunks between clock checks adapt to about
    _CHUNK_SECONDS (never more than twice that), so the search stops past the limit by less than
    2 * _CHUNK_SECONDS, and all of the simulated time went into the subsets visited."""
    per_subset, limit = 1e-6, 0.3
    scores = np.random.default_rng(7).random((28, 28))
    inst = rcprune.Instance(scores, density=0.3)
    clock = simulated_clock(monkeypatch, enumeration)
    visit = enumeration._gray_chunk

    def timed_chunk(scores, cols_for_size, size_bound, start, stop, *rest):
        clock.advance((stop - start) * per_subset)
        return visit(scores, cols_for_size, size_bound, start, stop, *rest)

    monkeypatch.setattr(enumeration, "_gray_chunk", timed_chunk)
    res = exact_enumeration(inst, time_limit=limit)
    assert res.status == "time_limit" and not res.info["complete"]
    assert limit <= res.runtime < limit + 2 * enumeration._CHUNK_SECONDS
    assert res.runtime == pytest.approx((res.iterations - 1) * per_subset, rel=1e-9)  # subset 0 is the start
    assert res.lower_bound < res.cost <= greedy_row_column(inst).cost
    assert res.feasible and res.cost == rcprune.evaluate(inst, res.solution).cost


def test_a_tiny_time_limit_returns_the_greedy_start():
    scores = np.random.default_rng(7).random((28, 28))
    inst = rcprune.Instance(scores, density=0.3)
    res = exact_enumeration(inst, time_limit=1e-9)
    assert res.status == "time_limit" and res.iterations == 1 and not res.info["complete"]
    assert res.cost == res.info["incumbent"][1] == min(greedy_row_column(inst).cost, greedy_column_row(inst).cost)
    assert res.lower_bound < res.cost and res.cost == rcprune.evaluate(inst, res.solution).cost


def test_transposed_fixed_shape_maps_back():
    scores = np.arange(24.0).reshape(6, 4) % 7
    inst = rcprune.Instance(scores, shape=(3, 2))
    res = exact_enumeration(inst)
    assert res.info["transposed"] and res.solution.shape == (3, 2)
    assert res.cost == pytest.approx(_optimum(scores, {"shape": (3, 2)}))


def test_refuses_large_sides_and_bad_options():
    with pytest.raises(rcprune.InvalidInstanceError, match=r"31 x 40.*min\(m, n\) = 31 > max_side = 30"):
        exact_enumeration(rcprune.Instance(np.ones((31, 40)), budget=10))
    with pytest.raises(rcprune.InvalidInstanceError, match="5 x 3"):
        exact_enumeration(rcprune.Instance(np.ones((5, 3)), budget=2), max_side=2)
    inst = rcprune.Instance(np.ones((2, 2)), budget=2)
    for bad in (0, -1, 2.5, True, "30"):
        with pytest.raises(rcprune.InvalidInstanceError, match="max_side"):
            exact_enumeration(inst, max_side=bad)
    with pytest.raises(rcprune.InvalidInstanceError, match="progress"):
        exact_enumeration(inst, progress="yes")


def test_dispatch_and_progress_bar(capsys):
    inst = rcprune.Instance(np.arange(30.0).reshape(5, 6), budget=7)
    res = rcprune.solve(inst, method="enumeration", max_side=5, progress=True)
    assert res.method == "enumeration" and res.status == "optimal"
    assert res.cost == pytest.approx(_optimum(inst.scores, {"budget": 7}))
    assert "enumeration" in capsys.readouterr().err
