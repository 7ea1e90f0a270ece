"""Every numba kernel equals its numpy reference (hypothesis), including 1 x n, m x 1, ties, zeros."""
import numpy as np
from hypothesis import example, given, strategies as st

from rcprune.matrix import kernels as K
from tests.matrix.strategies import score_matrices


@st.composite
def state(draw):
    s = draw(score_matrices(max_m=9, max_n=9))
    m, n = s.shape
    rows = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)), dtype=bool)
    cols = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return s, rows, cols


def close(a, b):
    return np.allclose(a, b, rtol=1e-12, atol=1e-9)


@given(state())
@example((np.zeros((1, 5)), np.array([True]), np.ones(5, bool)))
@example((np.ones((4, 1)), np.ones(4, bool), np.array([True])))
@example((np.ones((3, 3)), np.zeros(3, bool), np.ones(3, bool)))
def test_full_evaluation_and_restricted_sums(st_):
    s, rows, cols = st_
    assert close(K.kept_sum(s, rows, cols), K.kept_sum_reference(s, rows, cols))
    assert close(K.restricted_col_sums(s, rows), K.restricted_col_sums_reference(s, rows))
    assert close(K.restricted_row_sums(s, cols), K.restricted_row_sums_reference(s, cols))


@given(state(), st.data())
def test_toggle_deltas_and_updates(st_, data):
    s, rows, cols = st_
    st_t = np.ascontiguousarray(s.T)
    m, n = s.shape
    i = data.draw(st.integers(0, m - 1))
    j = data.draw(st.integers(0, n - 1))
    row_sums = K.restricted_row_sums(s, cols)
    col_sums = K.restricted_col_sums(s, rows)
    assert close(K.row_toggle_delta(rows, row_sums, i), K.row_toggle_delta_reference(s, rows, cols, i))
    assert close(K.col_toggle_delta(cols, col_sums, j), K.col_toggle_delta_reference(s, rows, cols, j))

    r1, c1 = rows.copy(), col_sums.copy()
    r2, c2 = rows.copy(), col_sums.copy()
    K.apply_row_toggle(s, r1, c1, i)
    K.apply_row_toggle_reference(s, r2, c2, i)
    assert (r1 == r2).all() and close(c1, c2) and close(c1, K.restricted_col_sums_reference(s, r1))

    k1, s1 = cols.copy(), row_sums.copy()
    k2, s2 = cols.copy(), row_sums.copy()
    K.apply_col_toggle(st_t, k1, s1, j)
    K.apply_col_toggle_reference(st_t, k2, s2, j)
    assert (k1 == k2).all() and close(s1, s2) and close(s1, K.restricted_row_sums_reference(s, k1))


@given(state(), st.data())
def test_swap_deltas_and_updates(st_, data):
    s, rows, cols = st_
    st_t = np.ascontiguousarray(s.T)
    row_sums = K.restricted_row_sums(s, cols)
    col_sums = K.restricted_col_sums(s, rows)
    if rows.any() and not rows.all():
        a = data.draw(st.sampled_from(np.flatnonzero(rows).tolist()))
        b = data.draw(st.sampled_from(np.flatnonzero(~rows).tolist()))
        assert close(K.row_swap_delta(row_sums, a, b), K.row_swap_delta_reference(s, rows, cols, a, b))
        r1, c1, r2, c2 = rows.copy(), col_sums.copy(), rows.copy(), col_sums.copy()
        K.apply_row_swap(s, r1, c1, a, b)
        K.apply_row_swap_reference(s, r2, c2, a, b)
        assert (r1 == r2).all() and close(c1, c2) and close(c1, K.restricted_col_sums_reference(s, r1))
    if cols.any() and not cols.all():
        a = data.draw(st.sampled_from(np.flatnonzero(cols).tolist()))
        b = data.draw(st.sampled_from(np.flatnonzero(~cols).tolist()))
        assert close(K.col_swap_delta(col_sums, a, b), K.col_swap_delta_reference(s, rows, cols, a, b))
        k1, s1, k2, s2 = cols.copy(), row_sums.copy(), cols.copy(), row_sums.copy()
        K.apply_col_swap(st_t, k1, s1, a, b)
        K.apply_col_swap_reference(st_t, k2, s2, a, b)
        assert (k1 == k2).all() and close(s1, s2) and close(s1, K.restricted_row_sums_reference(s, k1))


@given(st.lists(st.integers(0, 5).map(float), min_size=1, max_size=12), st.integers(-1, 14))
def test_top_k_sum(values, k):
    v = np.array(values)
    assert close(K.top_k_sum(v, k), K.top_k_sum_reference(v, k))


@given(st.lists(st.integers(0, 4).map(float), min_size=1, max_size=15), st.data())
def test_select_largest(values, data):
    k = data.draw(st.integers(1, len(values)))
    buf = np.array(values)
    kth = K.select_largest(buf, k)
    ref = np.array(values)
    assert kth == K.select_largest_reference(ref, k)
    assert sorted(buf[:k]) == sorted(ref[:k]) and sorted(buf) == sorted(values)


@given(state(), st.data())
def test_float32_scores_enter_every_sum_exactly(st_, data):
    """The annealing chain's float32 copies: numba and numpy agree bit for bit, and a float32 score enters
    every sum as its float64 value (a swap's difference is taken in float64)."""
    s64, rows, cols = st_
    s = s64.astype(np.float32)
    exact = s.astype(np.float64)
    st_t = np.ascontiguousarray(s.T)
    m, n = s.shape
    for fast, ref in ((K.restricted_col_sums(s, rows), K.restricted_col_sums_reference(s, rows)),
                      (K.restricted_row_sums(s, cols), K.restricted_row_sums_reference(s, cols))):
        assert fast.dtype == ref.dtype == np.float64 and close(fast, ref)
    assert close(K.kept_sum(s, rows, cols), K.kept_sum_reference(exact, rows, cols))
    i, k = data.draw(st.integers(0, m - 1)), data.draw(st.integers(0, m - 1))
    j, q = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    base_c, base_r = K.restricted_col_sums(exact, rows), K.restricted_row_sums(exact, cols)
    for kernel, reference, scores, sums, a, b in ((K.apply_row_swap, K.apply_row_swap_reference, s, base_c, i, k),
                                                  (K.apply_col_swap, K.apply_col_swap_reference, st_t, base_r, j, q)):
        mask_a, mask_b = np.zeros(scores.shape[0], bool), np.zeros(scores.shape[0], bool)
        sums_a, sums_b = sums.copy(), sums.copy()
        kernel(scores, mask_a, sums_a, a, b)
        reference(scores, mask_b, sums_b, a, b)
        assert np.array_equal(sums_a, sums_b)
        assert np.array_equal(sums_a, sums + (scores[b].astype(np.float64) - scores[a].astype(np.float64)))
