"""Baselines and greedy: feasible, never below the optimum, magnitude-optimal for H = c I, exact for diagonal H."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance

from tests.retention.bruteforce import optimum
from tests.retention.strategies import layers

FAST = ("magnitude", "diagonal", "retention-greedy")


def tol(x):
    return 1e-9 * (1.0 + abs(x))


@st.composite
def instances(draw, max_m=3, max_n=7):
    w, h = draw(layers(max_m=max_m, max_n=max_n))
    m, n = w.shape
    scope = draw(st.sampled_from(["row", "layer"]))
    if scope == "layer" and m * n > 12:
        w = w[:1]
        m = 1
    k = draw(st.integers(0, n if scope == "row" else m * n))
    return RetentionInstance(w, h, k=k, scope=scope, objective="masked")


@given(instances(), st.sampled_from(FAST))
def test_feasible_and_never_below_optimum(inst, method):
    res = rcprune.solve(inst, method=method)
    assert res.feasible and res.kept_count == inst.total_kept
    assert res.status == "feasible"
    opt = optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.cost >= opt - tol(opt)
    assert np.isclose(res.cost, rcprune.evaluate_retention(inst, res.solution).cost)


@given(layers(max_m=3, max_n=7), st.floats(0.1, 10.0), st.sampled_from(["row", "layer"]), st.data())
def test_identity_hessian_gives_magnitude_optimum(layer, scale, scope, data):
    w, _ = layer
    m, n = w.shape
    k = data.draw(st.integers(0, n if scope == "row" else m * n))
    inst = RetentionInstance(w, scale * np.eye(n), k=k, scope=scope, objective="masked")
    mag = rcprune.solve(inst, method="magnitude").cost
    for method in FAST:
        res = rcprune.solve(inst, method=method)
        assert abs(res.cost - mag) <= tol(mag)
        assert abs(res.cost - res.evaluation.magnitude_cost) <= tol(mag)


@given(layers(max_m=2, max_n=7), st.data())
def test_diagonal_hessian_is_solved_exactly(layer, data):
    w, _ = layer
    n = w.shape[1]
    diag = np.array(data.draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n)))
    k = data.draw(st.integers(0, n))
    inst = RetentionInstance(w, np.diag(diag), k=k, objective="masked")
    opt = optimum(inst.weights, inst.hessian, k)
    for method in ("diagonal", "retention-greedy"):
        assert abs(rcprune.solve(inst, method=method).cost - opt) <= tol(opt)


def test_greedy_keeps_small_weight_when_it_pays():
    h = [[1.0, -0.9, -0.9], [-0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]
    inst = RetentionInstance([[0.5, 0.8, -0.7]], h, k=1, objective="masked")
    res = rcprune.solve(inst, method="retention-greedy")
    assert res.evaluation.retained_small == 1 and res.cost < 0.2 * res.evaluation.magnitude_cost and res.evaluation.improvement > 0.8


@given(layers(max_m=3, max_n=8), st.sampled_from(["row", "layer"]))
def test_greedy_magnitude_start_is_feasible(layer, scope):
    w, h = layer
    m, n = w.shape
    inst = RetentionInstance(w, h, k=max(0, (n if scope == "row" else m * n) // 3), scope=scope, objective="masked")
    res = rcprune.solve(inst, method="retention-greedy", start="magnitude")
    assert res.feasible and res.info["start"] == "magnitude"


def test_solve_dispatch_errors_and_refit():
    inst = RetentionInstance(np.ones((2, 4)), np.eye(4), k=2, objective="masked")
    with pytest.raises(InvalidInstanceError, match="unknown method 'annealing'"):
        rcprune.solve(inst, method="annealing")
    with pytest.raises(InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="retention-greedy", moves=3)
    with pytest.raises(InvalidInstanceError, match="start must be"):
        rcprune.solve(inst, method="retention-greedy", start="middle")
    with pytest.raises(InvalidInstanceError, match="unknown option"):  # refitting is not a solver's job
        rcprune.solve(inst, method="retention-greedy", refit=True)


def test_time_limit_returns_feasible():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 200))
    inst = RetentionInstance(rng.laplace(size=(300, 60)), x @ x.T / 200, k=6, objective="masked")
    res = rcprune.solve(inst, method="retention-greedy", time_limit=1e-9)
    # out of time before the first block of rows: every row keeps its magnitude mask
    assert res.feasible and res.status == "time_limit"
    assert res.solution == rcprune.solve(inst, method="magnitude").solution and res.evaluation.improvement == 0
    layer = RetentionInstance(inst.weights, inst.hessian, k=1000, scope="layer", objective="masked")
    res = rcprune.solve(layer, method="retention-greedy", time_limit=1e-9)
    assert res.feasible and res.status == "time_limit"
    assert res.solution == rcprune.solve(layer, method="magnitude").solution and res.evaluation.improvement == 0
