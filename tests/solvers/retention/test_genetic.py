"""Retention genetic search: feasible, between the optimum and its greedy start, reproducible per seed."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance

from tests.retention.bruteforce import optimum
from tests.retention.strategies import layers
from tests.solvers.retention.test_greedy import instances, tol


@settings(max_examples=30)
@given(instances(), st.integers(0, 2**31 - 1))
def test_feasible_between_optimum_and_greedy(inst, seed):
    res = rcprune.solve(inst, method="retention-genetic", seed=seed, population=6, generations=5)
    greedy = rcprune.solve(inst, method="retention-greedy")
    opt = optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.feasible and res.kept_count == inst.total_kept
    assert opt - tol(opt) <= res.cost <= greedy.cost + tol(greedy.cost)


@settings(max_examples=20)
@given(layers(max_m=3, max_n=7), st.sampled_from(["row", "layer"]), st.data())
def test_identity_hessian_gives_magnitude_optimum(layer, scope, data):
    w, _ = layer
    m, n = w.shape
    k = data.draw(st.integers(0, n if scope == "row" else m * n))
    res = rcprune.solve(RetentionInstance(w, np.eye(n), k=k, scope=scope, objective="masked"), method="retention-genetic",
                        population=4, generations=3)
    assert abs(res.cost - res.evaluation.magnitude_cost) <= tol(res.cost)


def test_reproducible_and_options():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 30))
    x = x + rng.normal(size=(10, 10)) @ x
    for scope, k in (("row", 3), ("layer", 12)):
        inst = RetentionInstance(rng.laplace(size=(4, 10)), x @ x.T / 30, k=k, scope=scope, objective="masked")
        a = rcprune.solve(inst, method="retention-genetic", seed=3, generations=10)
        b = rcprune.solve(inst, method="retention-genetic", seed=3, generations=10)
        assert a.solution == b.solution and a.cost == b.cost
    res = rcprune.solve(inst, method="retention-genetic", time_limit=1e-9)
    # out of time in the greedy start (the magnitude mask) and before the first generation
    assert res.feasible and res.status == "time_limit" and res.iterations == 0
    assert res.cost <= rcprune.solve(inst, method="magnitude").cost * (1 + 1e-12)
    with pytest.raises(InvalidInstanceError, match="population"):
        rcprune.solve(inst, method="retention-genetic", population=1)
    with pytest.raises(InvalidInstanceError, match="mutation"):
        rcprune.solve(inst, method="retention-genetic", mutation=2.0)
