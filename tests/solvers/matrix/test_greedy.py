"""Greedy A (independent sums), greedy B (row-column) and its mirror: feasibility, the 2-approximation,
the surrogate lower bound, and per-shape costs against a straightforward O(m^2 n) implementation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rcprune
from rcprune.bounds.surrogate import surrogate_bound
from rcprune.matrix.model import maximal_shapes
from rcprune.solvers.matrix.greedy_independent import greedy_independent
from rcprune.solvers.matrix.greedy_row_column import greedy_column_row, greedy_row_column
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances

GREEDIES = (greedy_independent, greedy_row_column, greedy_column_row)


def _tol(scale: float) -> float:
    return 1e-9 * max(1.0, scale)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, kind="stable")[:k]


def _reference_shape_costs(scores: np.ndarray, shapes, restricted: bool) -> list[float]:
    """For each (r, c): rows = top-r by full sums; columns = top-c by full (greedy A) or restricted
    (greedy B) sums; the cost recomputed from scratch. O(m n) per shape, O(m^2 n) in all."""
    costs = []
    for r, c in shapes:
        rows = _top(scores.sum(axis=1), r)
        col_sums = scores[rows].sum(axis=0) if restricted else scores.sum(axis=0)
        cols = _top(col_sums, c)
        costs.append(scores.sum() - scores[np.ix_(rows, cols)].sum())
    return costs


budget_or_fixed_shape = st.one_of(instances(), instances(fixed_shape=True))


@given(budget_or_fixed_shape)
def test_greedies_are_feasible_two_approximations_with_valid_bounds(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    opt, _, _ = brute_force(scores, budget=budget.get("budget"), shape=budget.get("shape"))
    tol = _tol(inst.total)
    bound = surrogate_bound(inst)
    assert bound.lower_bound <= opt + tol
    assert bound.surrogate <= 2 * opt + tol
    for greedy in GREEDIES:
        res = greedy(inst)
        assert res.feasible, greedy.__name__
        assert rcprune.evaluate(inst, res.solution).feasible
        assert opt - tol <= res.cost <= 2 * opt + tol, greedy.__name__
        assert res.cost <= res.info["surrogate"] + tol, greedy.__name__
        assert res.lower_bound is not None and res.lower_bound <= opt + tol, greedy.__name__
        assert res.info["shape"] == res.solution.shape
        if res.status == "optimal":
            assert res.cost <= opt + tol
    assert greedy_row_column(inst).cost <= greedy_independent(inst).cost + tol


@given(budget_or_fixed_shape)
def test_shape_costs_match_the_quadratic_reference(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    tol = _tol(inst.total)
    for greedy, restricted, transpose in ((greedy_independent, False, False), (greedy_row_column, True, False),
                                          (greedy_column_row, True, True)):
        res = greedy(inst)
        lead, other = maximal_shapes(inst, transpose)
        mat = scores.T if transpose else scores
        expected = _reference_shape_costs(mat, zip(lead, other), restricted)
        shapes = [(r, c) for r, c, _ in res.info["shape_costs"]]
        assert shapes == [(int(o), int(l)) if transpose else (int(l), int(o)) for l, o in zip(lead, other)]
        got = [cost for _, _, cost in res.info["shape_costs"]]
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
        assert res.cost == pytest.approx(min(expected), abs=tol)


def test_budget_shapes_and_fixed_shape():
    inst = rcprune.Instance(np.arange(12.0).reshape(3, 4), budget=5)
    assert [(r, c) for r, c, _ in greedy_row_column(inst).info["shape_costs"]] == [(1, 4), (2, 2), (3, 1)]
    assert [(r, c) for r, c, _ in greedy_column_row(inst).info["shape_costs"]] == [
        (3, 1), (2, 2), (1, 3), (1, 4)]
    fixed = inst.replace(shape=(2, 3))
    for greedy in GREEDIES:
        res = greedy(fixed)
        assert res.solution.shape == (2, 3) and len(res.info["shape_costs"]) == 1


def test_ties_break_to_the_lowest_index_and_runs_repeat():
    inst = rcprune.Instance(np.ones((3, 4)), budget=4)
    for greedy in GREEDIES:
        first, second = greedy(inst), greedy(inst, seed=5)
        assert first.solution == second.solution and first.cost == second.cost
    assert greedy_independent(inst).solution == rcprune.Solution.from_indices(3, 4, [0], [0, 1, 2, 3])
    assert greedy_column_row(inst).solution == rcprune.Solution.from_indices(3, 4, [0, 1], [0, 1])


def test_greedy_b_beats_greedy_a_where_restricted_sums_matter():
    # Row 0 is the heaviest, but its mass sits in columns that are not the heaviest overall.
    scores = np.array([[0, 0, 10, 10], [9, 9, 0, 0], [9, 9, 0, 0]], dtype=float)
    inst = rcprune.Instance(scores, budget=2)
    a, b = greedy_independent(inst), greedy_row_column(inst)
    assert b.cost < a.cost
    assert b.solution == rcprune.Solution.from_indices(3, 4, [0], [2, 3])


def test_dispatch_through_solve():
    inst = rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2)
    for method in ("greedy-independent", "greedy-row-column", "greedy-column-row"):
        res = rcprune.solve(inst, method=method)
        assert res.method == method and res.feasible
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="greedy-row-column", max_side=3)
