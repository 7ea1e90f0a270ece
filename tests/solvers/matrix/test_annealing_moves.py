"""The annealing moves: uniform swap proposals (numba and the numpy twin draw alike), exact selections."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from rcprune.random_stream import NumpyStream, stream_seed
from rcprune.solvers.matrix import annealing_moves as moves


@pytest.mark.parametrize("r, c", [(1, 2), (3, 10), (5, 1), (6, 7)])
def test_swap_proposals_are_uniform_over_the_swap_neighbourhood(r, c):
    """Rows are proposed with probability r(m - r) / (r(m - r) + c(n - c)); numba and the numpy mirror draw
    the same kinds from the same stream."""
    m, n, draws = 6 + (r == 6), 12, 4000
    p = r * (m - r) / (r * (m - r) + c * (n - c))
    state = np.array([stream_seed(r, c)], dtype=np.uint64)
    mirror = NumpyStream(stream_seed(r, c))
    kinds = [int(moves.move_kind(1, 0, m, n, r, c, 0.0, state)) for _ in range(draws)]
    assert kinds == [moves.move_kind_numpy(1, 0, m, n, r, c, 0.0, mirror) for _ in range(draws)]
    rows = kinds.count(moves.ROW_SWAP)
    assert rows + kinds.count(moves.COL_SWAP) == draws
    assert abs(rows / draws - p) <= 5 * (p * (1 - p) / draws) ** 0.5


@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.data())
def test_select_smallest_picks_the_smallest_pairs_with_ties_to_the_lower_index(values, data):
    length = len(values)
    d = data.draw(st.integers(0, length))
    val = np.array(values, dtype=float)
    idx = np.array(data.draw(st.permutations(range(length))), dtype=np.int64)
    expected = set(idx[np.lexsort((idx, val))[:d]].tolist())
    moves.select_smallest(val, idx, length, d)
    assert set(idx[:d].tolist()) == expected
    assert set(moves.smallest(np.array(values, float), np.array(range(length)), d).tolist()) == set(
        np.lexsort((np.arange(length), np.array(values)))[:d].tolist())


@pytest.mark.parametrize("order", ["random", "ascending", "descending"])
@pytest.mark.parametrize("length, d", [(50, 1), (257, 10), (257, 32), (257, 33), (3000, 8), (3000, 500)])
def test_select_smallest_heap_and_quickselect_paths(length, d, order):
    rng = np.random.default_rng(length + d)
    values = rng.integers(0, 20, length).astype(float)  # many ties: the index decides
    labels = rng.permutation(length).astype(np.int64)
    if order != "random":
        rank = np.lexsort((labels, values))
        values, labels = values[rank], labels[rank]
        if order == "descending":
            values, labels = values[::-1].copy(), labels[::-1].copy()
    expected = set(labels[np.lexsort((labels, values))[:d]].tolist())
    val, idx = values.copy(), labels.copy()
    moves.select_smallest(val, idx, length, d)
    assert set(idx[:d].tolist()) == expected
    assert sorted(zip(val.tolist(), idx.tolist())) == sorted(zip(values.tolist(), labels.tolist()))  # a permutation
