"""The perspective bound on the compensated objective: valid at every refit point (the proof's claim),
below the proven optimum of weight selection and data-aware RC, tight where H is diagonal, and wired into
``lower_bound`` / ``certify``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.bounds.perspective import bound_at, diagonal_splits, perspective_bound
from rcprune.certify import certify, lower_bound
from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError


def _layer(seed: int, m: int, n: int, correlation: float):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3 * n + 5))
    x[1:] += correlation * x[:-1]
    return rng.standard_normal((m, n)), x @ x.T / x.shape[1]


def _tol(energy: float) -> float:
    return 1e-9 * max(1.0, energy)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(2, 7), st.floats(0.0, 0.95), st.data(),
       st.sampled_from(["row", "layer"]))
def test_below_the_proven_optimum_of_weight_selection(seed, m, n, correlation, data, scope):
    w, h = _layer(seed, m, n, correlation)
    k = data.draw(st.integers(0, n if scope == "row" else m * n))
    inst = rcprune.RetentionInstance(w, h, k=k, scope=scope, damping=0.01)
    exact = rcprune.solve(inst, method="compensated-exact")
    assert exact.status == "optimal"
    bound = perspective_bound(inst, iterations=60, steps=12).bound
    assert 0.0 <= bound <= exact.cost + _tol(exact.cost)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(2, 6), st.floats(0.0, 0.95), st.data())
def test_every_refit_point_gives_a_valid_bound(seed, m, n, correlation, data):
    """The proof's claim: for any beta (not only the relaxation's optimum) the dual value is below OPT."""
    w, h = _layer(seed, m, n, correlation)
    k = data.draw(st.integers(1, n - 1))
    inst = rcprune.RetentionInstance(w, h, k=k, damping=0.01)
    exact = rcprune.solve(inst, method="compensated-exact")
    beta = np.random.default_rng(seed + 1).standard_normal((m, n)) * data.draw(st.floats(0.0, 3.0))
    for _, d in diagonal_splits(inst.hessian):
        per_row = bound_at(inst.weights, inst.hessian, d, beta, k, "row")
        assert per_row.sum() <= exact.cost + _tol(exact.cost)
        layer = bound_at(inst.weights, inst.hessian, d, beta, k * m, "layer")
        assert layer[0] <= exact.cost + _tol(exact.cost)   # a layer budget of k m allows more


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.integers(2, 5), st.floats(0.0, 0.9), st.data())
def test_below_the_proven_optimum_of_data_aware_rc(seed, m, n, correlation, data):
    w, h = _layer(seed, m, n, correlation)
    inst = Instance.from_layer(w, hessian=h, budget=data.draw(st.integers(1, m * n - 1)), damping=0.01)
    exact = rcprune.solve(inst, method="compensated-rc-exact")
    assert exact.status == "optimal"
    res = perspective_bound(inst, iterations=60, steps=12)
    assert 0.0 <= res.bound <= exact.cost + _tol(exact.cost)


def test_tight_when_the_hessian_is_diagonal():
    rng = np.random.default_rng(3)
    w, diag = rng.standard_normal((4, 9)), rng.uniform(0.5, 2.0, 9)
    inst = rcprune.RetentionInstance(w, np.diag(diag), k=4, damping=0)
    want = np.sort(diag * w ** 2, axis=1)[:, :5].sum()   # the 5 least d_j w_j^2 of each row are pruned
    assert rcprune.solve(inst, method="compensated-exact").cost == pytest.approx(want)
    assert perspective_bound(inst).bound == pytest.approx(want, rel=1e-5)


def test_budgets_that_keep_nothing_or_everything():
    w, h = _layer(0, 3, 20, 0.5)
    none = rcprune.RetentionInstance(w, h, k=0, damping=0.01)
    assert perspective_bound(none).bound == pytest.approx(float(np.einsum("ij,jk,ik->", w, none.hessian, w)))
    assert perspective_bound(rcprune.RetentionInstance(w, h, k=20, damping=0.01)).bound == 0.0


def test_beyond_enumeration_it_bounds_every_solver():
    """n = 40 (compensated-exact stops at 16): every solver's cost is above the bound, which is non-trivial."""
    w, h = _layer(1, 6, 40, 0.6)
    inst = rcprune.RetentionInstance(w, h, sparsity=0.5, damping=0.01)
    bound = perspective_bound(inst).bound
    costs = [rcprune.solve(inst, method=m).cost for m in ("obc", "compensated-swap", "magnitude", "sparsegpt")]
    assert 0.3 * min(costs) < bound <= min(costs)


def test_lower_bound_and_certify_use_it():
    w, h = _layer(2, 4, 12, 0.5)
    inst = rcprune.RetentionInstance(w, h, sparsity=0.6, damping=0.01)
    res = certify(rcprune.solve(inst, method="obc"), inst)
    assert res.info["bound"]["method"] == "perspective"
    assert 0 < res.lower_bound <= res.cost and 0 <= res.gap < 1
    assert lower_bound(inst).bound == lower_bound(inst, "perspective").bound
    rc = Instance.from_layer(w, hessian=h, sparsity=0.6, damping=0.01)
    assert 0 < certify(rcprune.solve(rc, method="structured-obs"), rc).lower_bound


def test_bad_input_is_named():
    w, h = _layer(0, 2, 5, 0.3)
    with pytest.raises(InvalidInstanceError, match="perspective"):
        lower_bound(rcprune.RetentionInstance(w, h, k=2, damping=0.01), "topk")
    with pytest.raises(InvalidInstanceError, match="compensated objective"):
        perspective_bound(rcprune.RetentionInstance(w, h, k=2, objective="masked"))
    with pytest.raises(InvalidInstanceError, match="RetentionInstance"):
        perspective_bound(rcprune.Instance(np.abs(w), budget=3))


def test_a_time_limit_cuts_the_search_short_and_the_bound_stays_valid():
    w, h = _layer(4, 5, 12, 0.7)
    inst = rcprune.RetentionInstance(w, h, sparsity=0.5, damping=0.01)
    exact = rcprune.solve(inst, method="compensated-exact").cost
    cut, full = perspective_bound(inst, time_limit=0.0), perspective_bound(inst)
    assert 0.0 <= cut.bound <= exact + _tol(exact) and 0.0 < full.bound <= exact + _tol(exact)
    assert cut.runtime < full.runtime
