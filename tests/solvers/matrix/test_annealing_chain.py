"""One annealing chain: chunking does not change it, its incremental state equals a recomputation, and the
numpy reference chain keeps the same state, move for move."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune.matrix import kernels
from rcprune import library
from rcprune.random_stream import stream_seed
from rcprune.solvers.matrix import annealing as sa
from rcprune.solvers.matrix import annealing_chain as chain_mod
from rcprune.solvers.matrix.annealing_reference import NumpyChain
from rcprune.solvers.matrix.annealing_start import make_maximal, start_masks

from tests.matrix.strategies import instances


def make(scores, kw) -> rcprune.Instance:
    return rcprune.Instance(scores, **kw)


def chain_for(inst, seed=0, start="greedy", precision="auto", cls=chain_mod.Chain):
    masks, _ = start_masks(inst, start, seed, 1, {})
    return cls(inst, *make_maximal(inst, *masks[0]), stream_seed(seed, 0), precision=precision)


def test_chain_result_does_not_depend_on_chunk_sizes():
    inst = library.get("gaussian-40x60")
    whole, pieces = chain_for(inst), chain_for(inst)
    for chain in (whole, pieces):
        chain.schedule(5.0, 0.005, 30_000, 2)
    whole.run(30_000)
    rng = np.random.default_rng(0)
    while not pieces.done:
        pieces.run(int(rng.integers(1, 3000)))
    for name in ("rows", "cols", "best_rows", "best_cols", "row_perm", "col_sums", "counts", "reals", "rng"):
        assert np.array_equal(getattr(whole, name), getattr(pieces, name)), name


def assert_state_exact(inst, chain):
    rows, cols = chain.rows, chain.cols
    r, c = int(chain.counts[chain_mod.R]), int(chain.counts[chain_mod.C])
    assert (r, c) == (rows.sum(), cols.sum())
    s = chain.scores   # the scores the chain reads: float32 copies of inst.scores ("auto" precision)
    assert np.allclose(chain.row_sums, kernels.restricted_row_sums_reference(s, cols), rtol=1e-9, atol=1e-9)
    assert np.allclose(chain.col_sums, kernels.restricted_col_sums_reference(s, rows), rtol=1e-9, atol=1e-9)
    assert chain.reals[chain_mod.KEPT] == pytest.approx(kernels.kept_sum_reference(s, rows, cols), rel=1e-9, abs=1e-9)
    for mask, perm, pos, count in ((rows, chain.row_perm, chain.row_pos, r), (cols, chain.col_perm, chain.col_pos, c)):
        assert mask[perm[:count]].all() and not mask[perm[count:]].any()
        assert np.array_equal(pos[perm], np.arange(len(perm)))
    shape = chain.shape_index[r]
    assert shape >= 0 and chain.shape_cols[shape] == c  # always a Pareto shape
    assert chain.reals[chain_mod.BEST] >= kernels.kept_sum(s, chain.best_rows, chain.best_cols) - 1e-9


@given(st.one_of(instances(max_m=10, max_n=10), instances(max_m=10, max_n=10, fixed_shape=True)),
       st.integers(0, 5))
@settings(max_examples=40)
def test_incremental_state_after_each_chunk_equals_recomputation(case, seed):
    inst = make(*case)
    chain = chain_for(inst, seed, "random")
    chain.schedule(1.0 + seed, 1e-3, 2000, seed % 3)
    while not chain.done:
        chain.run(257)
        assert_state_exact(inst, chain)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_incremental_state_on_a_larger_instance(precision):
    inst = library.get("laplace-64x576")
    chain = chain_for(inst, precision=precision)
    assert chain.scores.dtype == precision
    chain.schedule(sa._calibrated_t0(chain, inst), 1e-3, 200_000, 0)
    for _ in range(4):
        chain.run(50_000)
        assert_state_exact(inst, chain)


STATE = ("rows", "cols", "best_rows", "best_cols", "row_perm", "row_pos", "col_perm", "col_pos", "row_sums",
         "col_sums", "counts", "reals", "rng")


@given(st.one_of(instances(integer=True, max_m=10, max_n=10),
                 instances(integer=True, max_m=10, max_n=10, fixed_shape=True)), st.integers(0, 5))
@settings(max_examples=40)
def test_numpy_reference_chain_keeps_the_same_state_after_each_chunk(case, seed):
    """On integer scores every sum is exact, so the two chains agree bit for bit, permutations included."""
    inst = make(*case)
    fast, slow = (chain_for(inst, seed, "random", cls=cls) for cls in (chain_mod.Chain, NumpyChain))
    assert fast.calibrate() == slow.calibrate()
    for chain in (fast, slow):
        chain.schedule(1.0 + seed, 1e-3, 2000, seed % 3)
    while not fast.done:
        fast.run(257)
        slow.run(257)
        for name in STATE:
            assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert slow.done


def test_a_chain_starts_from_a_pareto_shape_only():
    inst = rcprune.Instance(np.ones((3, 4)), budget=6)
    with pytest.raises(AssertionError, match="Pareto shape"):
        chain_mod.Chain(inst, np.array([True, False, False]), np.array([True, False, False, False]), 1)
