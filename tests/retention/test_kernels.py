"""Retention kernels equal their numpy references; incremental deltas equal full recomputation."""
import numpy as np
from hypothesis import given, strategies as st

from rcprune import random_stream as rs
from rcprune.retention import kernels as rk
from tests.retention.strategies import layers


def close(a, b):
    return np.allclose(a, b, rtol=1e-9, atol=1e-9)


@st.composite
def row_state(draw):
    w, h = draw(layers(max_m=1, max_n=9))
    n = w.shape[1]
    keep = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return np.ascontiguousarray(w[0]), h, keep


@given(row_state())
def test_error_and_gradient(state):
    w, h, keep = state
    assert close(rk.row_error(w, h, keep), rk.row_error_reference(w, h, keep))
    assert close(rk.pruned_gradient(w, h, keep), rk.pruned_gradient_reference(w, h, keep))
    d = np.where(keep, 0.0, w)
    assert close(rk.row_error(w, h, keep), d @ rk.pruned_gradient(w, h, keep))


@given(layers(max_m=5, max_n=7), st.integers(0, 2**32 - 1))
def test_row_errors_parallel(layer, seed):
    w, h = layer
    mask = np.random.default_rng(seed).random(w.shape) < 0.5
    assert close(rk.row_errors(w, h, mask), rk.row_errors_reference(w, h, mask))


@given(row_state(), st.data())
def test_incremental_moves_equal_recomputation(state, data):
    w, h, keep = state
    kept, pruned = np.flatnonzero(keep), np.flatnonzero(~keep)
    g = rk.pruned_gradient(w, h, keep)
    e = rk.row_error(w, h, keep)
    if kept.size:
        j = data.draw(st.sampled_from(kept.tolist()))
        delta = rk.removal_delta(w, h, g, j)
        assert close(delta, rk.removal_delta_reference(w, h, keep, j))
        k1, g1 = keep.copy(), g.copy()
        k2, g2 = keep.copy(), g.copy()
        rk.apply_removal(w, h, g1, k1, j)
        rk.apply_removal_reference(w, h, g2, k2, j)
        assert (k1 == k2).all() and close(g1, g2) and close(e + delta, rk.row_error_reference(w, h, k1))
    if pruned.size:
        l = data.draw(st.sampled_from(pruned.tolist()))
        delta = rk.restore_delta(w, h, g, l)
        assert close(delta, rk.restore_delta_reference(w, h, keep, l))
        k1, g1 = keep.copy(), g.copy()
        k2, g2 = keep.copy(), g.copy()
        rk.apply_restore(w, h, g1, k1, l)
        rk.apply_restore_reference(w, h, g2, k2, l)
        assert (k1 == k2).all() and close(g1, g2) and close(e + delta, rk.row_error_reference(w, h, k1))
    if kept.size and pruned.size:
        j = data.draw(st.sampled_from(kept.tolist()))
        l = data.draw(st.sampled_from(pruned.tolist()))
        delta = rk.swap_delta(w, h, g, j, l)
        assert close(delta, rk.swap_delta_reference(w, h, keep, j, l))
        k1, g1 = keep.copy(), g.copy()
        k2, g2 = keep.copy(), g.copy()
        rk.apply_swap(w, h, g1, k1, j, l)
        rk.apply_swap_reference(w, h, g2, k2, j, l)
        assert (k1 == k2).all() and close(g1, g2) and close(e + delta, rk.row_error_reference(w, h, k1))


def test_long_walk_stays_exact():
    """1000 random swaps applied incrementally end where a full recomputation does."""
    rng = np.random.default_rng(3)
    n = 12
    x = rng.normal(size=(n, 40))
    h = x @ x.T / 40
    w = rng.laplace(size=n)
    keep = np.zeros(n, dtype=bool)
    keep[:4] = True
    g, e = rk.pruned_gradient(w, h, keep), rk.row_error(w, h, keep)
    for _ in range(1000):
        j = rng.choice(np.flatnonzero(keep))
        l = rng.choice(np.flatnonzero(~keep))
        e += rk.swap_delta(w, h, g, j, l)
        rk.apply_swap(w, h, g, keep, j, l)
    assert close(e, rk.row_error_reference(w, h, keep))
    assert close(g, rk.pruned_gradient_reference(w, h, keep))


def test_random_stream_is_reproducible_and_in_range():
    state = np.array([rs.stream_seed(7, 0), rs.stream_seed(7, 1)], dtype=np.uint64)
    again = state.copy()
    draws = [rs.random_below(state, 0, 5) for _ in range(200)]
    assert draws == [rs.random_below(again, 0, 5) for _ in range(200)]
    assert set(draws) == set(range(5))
    u = [rs.random_uniform(state, 1) for _ in range(200)]
    assert all(0.0 <= x < 1.0 for x in u)
    assert rs.stream_seed(7, 0) != rs.stream_seed(7, 1) != rs.stream_seed(8, 1)
