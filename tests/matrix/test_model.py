"""Instance / Solution / evaluate semantics and every bad input named by its error message."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rcprune
from rcprune import Instance, InvalidInstanceError, Solution, evaluate

from tests.matrix.strategies import instances


def test_evaluate_small_example():
    inst = Instance([[3, 1, 0], [1, 0, 2]], budget=2)
    ev = evaluate(inst, Solution([True, False], [True, True, False]))
    assert (ev.cost, ev.kept_sum, ev.kept_count, ev.feasible) == (3.0, 4.0, 2, True)
    assert ev.density == pytest.approx(2 / 6)
    ev = evaluate(inst, Solution([True, True], [True, False, False]))
    assert ev.feasible and ev.cost == 3.0
    assert not evaluate(inst, Solution([True, True], [True, True, False])).feasible


@given(instances(max_m=6, max_n=6), st.data())
def test_evaluate_matches_definition(inst_kw, data):
    s, kw = inst_kw
    inst = Instance(s, **kw)
    m, n = s.shape
    rows = np.array(data.draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    cols = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    ev = evaluate(inst, Solution(rows, cols))
    outside = s[~np.outer(rows, cols)].sum()
    assert ev.cost == pytest.approx(outside, rel=1e-12, abs=1e-9)
    assert ev.kept_count == rows.sum() * cols.sum()
    assert ev.feasible == (rows.sum() * cols.sum() <= kw["budget"])


def test_fixed_shape_feasibility():
    inst = Instance(np.ones((3, 4)), shape=(2, 2))
    assert inst.budget == 4 and inst.fixed_shape == (2, 2)
    assert evaluate(inst, Solution.from_indices(3, 4, [0, 1], [2, 3])).feasible
    assert not evaluate(inst, Solution.from_indices(3, 4, [0], [0, 1, 2, 3])).feasible


def test_budget_forms():
    s = np.ones((10, 10))
    assert Instance(s, density=0.25).budget == 25
    assert Instance(s, sparsity=0.9).budget == 10
    assert Instance(s, sparsity=0.0).budget == 100
    assert Instance(s, density=0.333).budget == 33


def test_accepts_ints_and_float32_and_is_immutable():
    inst = Instance(np.arange(6, dtype=np.int32).reshape(2, 3), budget=3)
    assert inst.scores.dtype == np.float64 and inst.scores.flags.c_contiguous
    with pytest.raises(ValueError):
        inst.scores[0, 0] = 5
    with pytest.raises(AttributeError):
        inst.budget = 4
    assert Instance(np.ones((2, 2), dtype=np.float32), budget=1).total == 4.0
    src = np.ones((2, 2))
    inst = Instance(src, budget=1)
    src[0, 0] = 100  # the instance owns a copy
    assert inst.total == 4.0


def test_replace_keeps_or_changes_budget():
    inst = Instance(np.ones((4, 4)), budget=5, name="a", metadata={"x": 1})
    assert inst.replace(name="b").budget == 5
    assert inst.replace(density=0.5).budget == 8
    assert inst.replace(shape=(2, 2)).fixed_shape == (2, 2)
    assert inst.replace(metadata={"y": 2}).metadata == {"y": 2}


def test_scores_from_weights():
    w = np.array([[[[1.0, -2.0]]], [[[-0.5, 0.0]]]])  # (2, 1, 1, 2) conv weight
    assert rcprune.scores(w).tolist() == [[1.0, 2.0], [0.5, 0.0]]
    assert rcprune.scores(w, kind="l2").tolist() == [[1.0, 4.0], [0.25, 0.0]]
    with pytest.raises(InvalidInstanceError, match="unknown score kind"):
        rcprune.scores(w, kind="l3")
    with pytest.raises(InvalidInstanceError, match="at least 2 dimensions"):
        rcprune.scores(np.ones(3))
    with pytest.raises(InvalidInstanceError, match="non-finite"):
        rcprune.scores([[1.0, math.nan]])


@pytest.mark.parametrize("scores, kw, message", [
    (np.ones(4), {"budget": 1}, "2-D matrix, got ndim=1"),
    (np.ones((2, 2, 2)), {"budget": 1}, "ndim=3"),
    (np.ones((0, 3)), {"budget": 1}, "empty matrix"),
    (np.array([[1.0, np.nan]]), {"budget": 1}, "NaN"),
    (np.array([[1.0, np.inf]]), {"budget": 1}, "inf"),
    (np.array([[1.0, -0.5]]), {"budget": 1}, "non-negative"),
    (np.array([["a", "b"]]), {"budget": 1}, "numeric"),
    (np.array([[True, False]]), {"budget": 1}, "numeric"),
    ([[1, 2], [3]], {"budget": 1}, "cannot be converted"),
    (np.ones((2, 3)), {"budget": 0}, "between 1 and m\\*n = 6"),
    (np.ones((2, 3)), {"budget": 7}, "between 1 and m\\*n = 6"),
    (np.ones((2, 3)), {"budget": 2.5}, "budget must be an integer"),
    (np.ones((2, 3)), {"density": 0.0}, "density must be in \\(0, 1\\]"),
    (np.ones((2, 3)), {"density": 1.5}, "density must be in"),
    (np.ones((2, 3)), {"density": 0.1}, "impossible budget"),
    (np.ones((2, 3)), {"sparsity": 1.0}, "sparsity must be in \\[0, 1\\)"),
    (np.ones((2, 3)), {"sparsity": -0.1}, "sparsity must be in"),
    (np.ones((2, 3)), {"shape": (3, 1)}, "shape \\(3, 1\\) is impossible"),
    (np.ones((2, 3)), {"shape": (1, 0)}, "impossible"),
    (np.ones((2, 3)), {"shape": 4}, "pair"),
    (np.ones((2, 3)), {}, "exactly one of budget"),
    (np.ones((2, 3)), {"budget": 2, "density": 0.5}, "exactly one of budget, density"),
])
def test_bad_instances_are_named(scores, kw, message):
    with pytest.raises(InvalidInstanceError, match=message):
        Instance(scores, **kw)


def test_bad_name_and_metadata():
    with pytest.raises(InvalidInstanceError, match="name"):
        Instance(np.ones((2, 2)), budget=1, name="")
    with pytest.raises(InvalidInstanceError, match="JSON-serializable"):
        Instance(np.ones((2, 2)), budget=1, metadata={"f": object()})


@pytest.mark.parametrize("rows, cols, message", [
    ([1, 0, 2], [1, 1], "0/1 integers"),
    ([0.5, 1.0], [1, 1], "boolean keep-mask"),
    ([[True, False]], [True], "must have length"),
])
def test_bad_masks(rows, cols, message):
    with pytest.raises(InvalidInstanceError, match=message):
        Solution(rows, cols)


def test_mask_length_mismatch_and_wrong_type():
    inst = Instance(np.ones((2, 3)), budget=2)
    with pytest.raises(InvalidInstanceError, match="row mask has length 3 but the instance has 2 rows"):
        evaluate(inst, Solution([True, True, False], [True, False, False]))
    with pytest.raises(InvalidInstanceError, match="column mask has length 2 but the instance has 3 columns"):
        evaluate(inst, Solution([True, False], [True, False]))
    with pytest.raises(InvalidInstanceError, match="expected a rcprune.Solution"):
        evaluate(inst, ([True, False], [True, False, False]))
    with pytest.raises(InvalidInstanceError, match="row indices must be in"):
        Solution.from_indices(2, 3, [2], [0])


def test_solve_rejects_bad_calls():
    inst = Instance(np.ones((2, 3)), budget=2)
    with pytest.raises(InvalidInstanceError, match="unknown method 'magic'"):
        rcprune.solve(inst, method="magic")
    with pytest.raises(InvalidInstanceError, match="unknown option\\(s\\) turbo"):
        rcprune.solve(inst, method="top-rows", turbo=True)
    with pytest.raises(InvalidInstanceError, match="seed must be a non-negative integer"):
        rcprune.solve(inst, method="top-rows", seed=-1)
    with pytest.raises(InvalidInstanceError, match="time_limit must be a positive"):
        rcprune.solve(inst, method="top-rows", time_limit=0)
    with pytest.raises(InvalidInstanceError, match="expected a rcprune.Instance"):
        rcprune.solve(np.ones((2, 2)), method="top-rows")


@given(instances(max_m=6, max_n=6))
def test_baseline_is_feasible_and_consistent(inst_kw):
    s, kw = inst_kw
    inst = Instance(s, **kw)
    res = rcprune.solve(inst, method="top-rows")
    ev = evaluate(inst, res.solution)
    assert res.feasible and ev.feasible and res.cost == ev.cost and res.status == "feasible"


def test_scores_whose_sum_overflows_are_named():
    """Each score finite, their sum not: every cost would be inf - inf."""
    with pytest.raises(InvalidInstanceError, match="sum to more than a float64 holds"):
        Instance(np.full((2, 2), 1e308), budget=1)
    from rcprune.network.builder import NetworkBuilder
    b = NetworkBuilder()
    with pytest.raises(InvalidInstanceError, match="scores of layer 'fc' sum to more than a float64 holds"):
        b.layer("fc", np.full((2, 2), 1e308), b.input("x", 2))
