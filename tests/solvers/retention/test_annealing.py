"""Retention annealing: feasible, between the optimum and its greedy start, magnitude-optimal for H = I,
reproducible per seed and independent of the chunking."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import RetentionInstance
from rcprune.solvers.retention import annealing as sa
from tests.retention.bruteforce import optimum
from tests.retention.strategies import layers
from tests.solvers.retention.test_greedy import instances, tol


@settings(max_examples=40)
@given(instances(), st.integers(0, 2**31 - 1))
def test_feasible_between_optimum_and_greedy(inst, seed):
    res = rcprune.solve(inst, method="retention-annealing", seed=seed, moves=300)
    greedy = rcprune.solve(inst, method="retention-greedy")
    opt = optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.feasible and res.kept_count == inst.total_kept and res.status == "feasible"
    assert opt - tol(opt) <= res.cost <= greedy.cost + tol(greedy.cost)
    assert np.isclose(res.info["start_cost"], greedy.cost)


@settings(max_examples=25)
@given(layers(max_m=3, max_n=7), st.sampled_from(["row", "layer"]), st.data())
def test_identity_hessian_gives_magnitude_optimum(layer, scope, data):
    w, _ = layer
    m, n = w.shape
    k = data.draw(st.integers(0, n if scope == "row" else m * n))
    inst = RetentionInstance(w, np.eye(n), k=k, scope=scope, objective="masked")
    res = rcprune.solve(inst, method="retention-annealing", start="magnitude", moves=200)
    assert abs(res.cost - res.evaluation.magnitude_cost) <= tol(res.cost)


def _correlated(seed, m=6, n=12, scope="row", k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 30))
    x = x + rng.normal(size=(n, n)) @ x
    return RetentionInstance(rng.laplace(size=(m, n)), x @ x.T / 30, k=k, scope=scope, objective="masked")


def test_same_seed_same_answer_regardless_of_chunking(monkeypatch):
    for scope, k in (("row", 3), ("layer", 20)):
        inst = _correlated(1, scope=scope, k=k)
        a = rcprune.solve(inst, method="retention-annealing", seed=5, moves=5000, start="magnitude")
        monkeypatch.setattr(sa, "CHUNK", 37)
        b = rcprune.solve(inst, method="retention-annealing", seed=5, moves=5000, start="magnitude")
        monkeypatch.undo()
        assert a.solution == b.solution and a.cost == b.cost and a.iterations == b.iterations


def test_finds_the_optimum_on_a_small_correlated_layer():
    inst = _correlated(2, m=4, n=10, k=3)
    opt = optimum(inst.weights, inst.hessian, inst.k)
    best = min(rcprune.solve(inst, method="retention-annealing", seed=s, start="magnitude").cost for s in range(3))
    assert best <= opt + tol(opt)


def test_time_limit_and_progress():
    inst = _correlated(3, m=40, n=30, k=3)
    res = rcprune.solve(inst, method="retention-annealing", time_limit=1e-9, moves=10**7)
    # out of time in the greedy start (rows keep their magnitude masks) and before the first chunk of moves
    assert res.feasible and res.status == "time_limit" and res.iterations == 0
    magnitude = rcprune.solve(inst, method="magnitude")
    assert res.solution == magnitude.solution and res.info["start_cost"] == pytest.approx(magnitude.cost, rel=1e-12)
    layer = _correlated(3, m=20, n=30, k=60, scope="layer")
    res = rcprune.solve(layer, method="retention-annealing", time_limit=0.3, moves=10**9, start="magnitude",
                        progress=True)
    assert res.feasible and res.status == "time_limit"
