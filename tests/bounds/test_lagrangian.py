"""The Lagrangian decomposition bound and shape-wise pruning: valid at every iterate, against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.certify import lower_bound
from rcprune.solvers.matrix.exact_shapes import ExactShapes
from rcprune.bounds.lagrangian import lagrangian_shape, row_view
from rcprune.bounds.shapewise import shapewise_bound
from rcprune.bounds.topk import topk_table
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances, score_matrices


def _tol(total: float) -> float:
    return 1e-9 * max(1.0, total)


@given(score_matrices(max_m=6, max_n=6), st.data())
def test_row_view_is_the_best_rows_times_best_entries(scores, data):
    m, n = scores.shape
    r, c = data.draw(st.integers(1, m)), data.draw(st.integers(1, n))
    signed = scores - data.draw(st.floats(0, 50))
    value, mask = row_view(signed, r, c)
    tops = np.sort(np.sort(signed, axis=1)[:, ::-1][:, :c].sum(axis=1))[::-1][:r].sum()
    assert value == pytest.approx(tops, abs=1e-9 * (1 + np.abs(signed).sum()))
    assert mask.sum() == r * c and (mask.sum(axis=1) > 0).sum() == r
    assert (mask * signed).sum() == pytest.approx(value, abs=1e-9 * (1 + np.abs(signed).sum()))


@settings(max_examples=60)
@given(score_matrices(max_m=6, max_n=6), st.data(), st.booleans())
def test_every_lagrangian_iterate_is_valid(scores, data, spectral):
    m, n = scores.shape
    r, c = data.draw(st.integers(1, m)), data.draw(st.integers(1, n))
    best_kept = scores.sum() - brute_force(scores, shape=(r, c))[0]
    trace = []
    final = lagrangian_shape(rcprune.Instance(scores, shape=(r, c)), r, c, spectral=spectral, trace=trace,
                             max_iterations=30, certify_every=1)
    assert trace
    for _, value in trace:
        assert best_kept <= value + _tol(scores.sum())
    assert final == min(v for _, v in trace)


@given(instances(max_m=6, max_n=6))
def test_lagrangian_and_shapewise_bounds_below_optimum(case):
    scores, kw = case
    inst = rcprune.Instance(scores, **kw)
    opt = brute_force(scores, **kw)[0]
    for method in ("lagrangian", "shapewise", "best"):
        res = lower_bound(inst, method, time_limit=5)
        assert 0.0 <= res.bound <= opt + _tol(inst.total), (method, res.bound, opt)
        for (r, c, low), (r2, c2) in zip(res.per_shape, zip(*topk_table(inst).rows_cols())):
            assert (r, c) == (r2, c2)
            assert low <= brute_force(scores, shape=(r, c))[0] + _tol(inst.total)


def test_shapewise_proves_optimality_on_small_sides():
    rng = np.random.default_rng(5)
    inst = rcprune.Instance(rng.laplace(size=(10, 40)).__abs__(), sparsity=0.9)
    res = shapewise_bound(inst, ExactShapes.incumbent(inst), time_limit=20, exact=ExactShapes)
    opt = rcprune.solve(inst, method="enumeration").cost
    assert res.bound == pytest.approx(opt, rel=1e-9)
    assert all(how == "exact" for *_, how in res.info["refined"])


def test_spectral_lagrangian_improves_on_random_layer():
    rng = np.random.default_rng(7)
    inst = rcprune.Instance(np.abs(rng.laplace(size=(24, 120))), sparsity=0.9)
    start = lower_bound(inst, "spectral").bound
    res = lower_bound(inst, "lagrangian", time_limit=30)
    assert res.bound >= lower_bound(inst, "topk").bound - _tol(inst.total)
    best = lower_bound(inst, "shapewise", time_limit=30)
    assert best.bound >= start - _tol(inst.total)
