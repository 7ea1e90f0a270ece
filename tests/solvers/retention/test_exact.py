"""Exact retention equals an independent brute force; heuristics never beat it; bounds are proven."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance
from rcprune.solvers.retention.exact import split_budget

from tests.retention.bruteforce import optimum
from tests.solvers.retention.test_greedy import instances, tol


@given(instances(max_m=3, max_n=8))
def test_enumeration_equals_brute_force(inst):
    res = rcprune.solve(inst, method="retention-exact")
    opt = optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.feasible and res.status == "optimal" and res.info["backend"] == "enumeration"
    assert abs(res.cost - opt) <= tol(opt) and abs(res.lower_bound - res.cost) <= tol(opt)
    for method in ("magnitude", "diagonal", "retention-greedy"):
        assert rcprune.solve(inst, method=method).cost >= res.cost - tol(opt)


@settings(max_examples=15)
@given(instances(max_m=2, max_n=6))
def test_cpsat_equals_brute_force(inst):
    res = rcprune.solve(inst, method="retention-exact", backend="cpsat")
    opt = optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.feasible and res.info["backend"] == "cpsat"
    assert res.lower_bound <= opt + tol(opt)
    assert res.status == "optimal"
    assert abs(res.cost - opt) <= 1e-6 * max(1.0, opt)


@settings(max_examples=20)
@given(instances(max_m=3, max_n=7), st.integers(0, 1000))
def test_metaheuristics_never_below_exact(inst, seed):
    exact = rcprune.solve(inst, method="retention-exact")
    sa = rcprune.solve(inst, method="retention-annealing", seed=seed, moves=200)
    assert sa.cost >= exact.cost - tol(exact.cost)


def test_split_budget_against_all_splits():
    rng = np.random.default_rng(0)
    table = np.sort(rng.random((3, 5)), axis=1)[:, ::-1].copy()
    for total in range(13):
        best = min(table[0, a] + table[1, b] + table[2, total - a - b]
                   for a in range(5) for b in range(5) if 0 <= total - a - b <= 4)
        value, counts = split_budget(table, total)
        assert np.isclose(value, best) and counts.sum() == total


def test_time_limit_keeps_proven_rows_and_a_valid_bound():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(18, 60))
    inst = RetentionInstance(rng.laplace(size=(40, 18)), x @ x.T / 60, k=4)
    res = rcprune.solve(inst, method="retention-exact", time_limit=1e-9)
    assert res.feasible and res.status == "time_limit" and res.lower_bound == 0.0
    res = rcprune.solve(inst, method="retention-exact", backend="cpsat", time_limit=0.5)
    assert res.feasible and res.lower_bound is not None and res.lower_bound <= res.cost


def test_option_errors():
    inst = RetentionInstance(np.ones((1, 21)), np.eye(21), k=2)
    with pytest.raises(InvalidInstanceError, match="n <= 20"):
        rcprune.solve(inst, method="retention-exact", backend="enumeration")
    with pytest.raises(InvalidInstanceError, match="backend"):
        rcprune.solve(inst, method="retention-exact", backend="milp")
