"""Exact retention equals an independent brute force; heuristics never beat it; bounds are proven."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from ortools.sat.python import cp_model

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance
from rcprune.retention import kernels as rk
from rcprune.solvers.retention.exact import split_budget

from tests.clock import simulated_clock
from tests.retention.bruteforce import optimum
from tests.solvers.retention.test_greedy import instances, tol

exact_module = importlib.import_module("rcprune.solvers.retention.exact")


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


def _time_limit_case():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(18, 60))
    return RetentionInstance(rng.laplace(size=(40, 18)), x @ x.T / 60, k=4, objective="masked")


def test_time_limit_keeps_proven_rows_and_a_valid_bound(monkeypatch):
    """Simulated clock: each block of ROW_BLOCK = 16 rows takes 1 s, so a 1.5 s limit proves rows 0-31
    (two blocks) and stops before rows 32-39, which keep the greedy mask; the bound is the proven rows' error."""
    inst = _time_limit_case()
    w, h = inst.weights, inst.hessian
    exact, greedy = rcprune.solve(inst, method="retention-exact"), rcprune.solve(inst, method="retention-greedy")
    res = rcprune.solve(inst, method="retention-exact", time_limit=1e-9)
    assert res.status == "time_limit" and res.lower_bound == 0.0 and res.solution == greedy.solution

    clock = simulated_clock(monkeypatch)
    enumerate_rows = exact_module.enumerate_rows

    def one_second_per_block(*args):
        enumerate_rows(*args)
        clock.advance(1.0)

    monkeypatch.setattr(exact_module, "enumerate_rows", one_second_per_block)
    res = rcprune.solve(inst, method="retention-exact", time_limit=1.5)
    assert exact_module.ROW_BLOCK == 16 and res.status == "time_limit" and res.runtime == 2.0
    errors, optimal = rk.row_errors(w, h, res.solution.mask), rk.row_errors(w, h, exact.solution.mask)
    assert np.array_equal(errors[:32], optimal[:32])
    assert np.array_equal(res.solution.mask[32:], greedy.solution.mask[32:])
    assert res.lower_bound == pytest.approx(optimal[:32].sum(), rel=1e-12) and res.cost == errors.sum()
    assert exact.status == "optimal" and res.lower_bound < exact.cost <= res.cost <= greedy.cost


def test_cpsat_time_limit_is_the_time_left_and_its_bound_is_valid(monkeypatch):
    """Simulated clock (the model takes no time to build): CP-SAT is given the whole limit; it then runs
    for a fixed deterministic time instead, so the outcome does not depend on the machine."""
    inst = _time_limit_case()
    exact, greedy = rcprune.solve(inst, method="retention-exact"), rcprune.solve(inst, method="retention-greedy")
    simulated_clock(monkeypatch)
    solve, given = cp_model.CpSolver.Solve, []

    def record_then_run_deterministically(self, model, *args):
        given.append(self.parameters.max_time_in_seconds)
        self.parameters.max_time_in_seconds = 60.0
        self.parameters.max_deterministic_time = 0.2
        return solve(self, model, *args)

    monkeypatch.setattr(cp_model.CpSolver, "Solve", record_then_run_deterministically)
    res = rcprune.solve(inst, method="retention-exact", backend="cpsat", time_limit=0.5)
    assert given == [0.5] and res.info["cpsat_status"] in ("FEASIBLE", "OPTIMAL")
    assert res.feasible and res.cost == rcprune.evaluate(inst, res.solution).cost
    assert res.lower_bound <= exact.cost + tol(exact.cost) and exact.cost - tol(exact.cost) <= res.cost <= greedy.cost


def test_option_errors():
    inst = RetentionInstance(np.ones((1, 21)), np.eye(21), k=2, objective="masked")
    with pytest.raises(InvalidInstanceError, match="n <= 20"):
        rcprune.solve(inst, method="retention-exact", backend="enumeration")
    with pytest.raises(InvalidInstanceError, match="backend"):
        rcprune.solve(inst, method="retention-exact", backend="milp")


def test_a_time_out_before_any_proof_still_reports_the_trivial_bound():
    """E >= 0 for a positive semi-definite H, so a stopped exact solve always has a bound (0 at worst)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(18, 60))
    layer = RetentionInstance(rng.laplace(size=(40, 18)), x @ x.T / 60, k=160, scope="layer", objective="masked")
    res = rcprune.solve(layer, method="retention-exact", time_limit=1e-9)
    assert res.status == "time_limit" and res.lower_bound == 0.0 and res.gap == 1.0
    assert res.cost == rcprune.evaluate(layer, res.solution).cost
    with pytest.raises(InvalidInstanceError, match="proof_tolerance"):
        rcprune.solve(layer, method="retention-exact", proof_tolerance=True)
