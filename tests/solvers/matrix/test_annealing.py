"""Simulated annealing: feasible, never below the brute-force optimum nor above its start, deterministic,
its incremental state exact, its numpy mirror move-for-move equal, its time limit kept."""
import itertools
import time

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import rcprune
from rcprune.matrix import kernels
from rcprune.matrix import library
from rcprune.random_stream import NumpyStream, stream_seed
from rcprune.solvers.matrix import annealing as sa
from rcprune.solvers.matrix import annealing_chain as chain_mod
from rcprune.solvers.matrix import annealing_moves as moves
from rcprune.solvers.matrix.annealing_start import best_response, make_maximal, start_masks
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances


def make(scores, kw) -> rcprune.Instance:
    return rcprune.Instance(scores, **kw)


def optimum(inst: rcprune.Instance) -> float:
    return brute_force(inst.scores, budget=inst.budget, shape=inst.fixed_shape)[0]


def start_cost(inst: rcprune.Instance) -> float:
    return greedy_row_column(inst).cost


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Compile (or load) the chain once, so time limits measure the search."""
    sa.local_annealing(rcprune.Instance(np.ones((3, 4)), budget=5), moves=100)
    sa.local_annealing(rcprune.Instance(np.ones((3, 4)), shape=(2, 2)), moves=100)


@given(instances(), st.integers(0, 3), st.sampled_from(["greedy", "random"]))
@example((np.zeros((2, 3)), {"budget": 1}), 0, "greedy")
@example((np.ones((1, 1)), {"budget": 1}), 0, "greedy")
@example((np.arange(12.0).reshape(3, 4), {"budget": 12}), 1, "random")
def test_feasible_between_optimum_and_start(case, seed, start):
    inst = make(*case)
    res = sa.local_annealing(inst, seed=seed, moves=1500, chains=1 + seed % 2, restarts=seed % 2, start=start)
    ev = rcprune.evaluate(inst, res.solution)
    assert ev.feasible and res.feasible
    assert res.cost == ev.cost
    assert res.cost >= optimum(inst) - 1e-9
    if start == "greedy":
        assert res.cost <= start_cost(inst) + 1e-9
    assert res.status in ("feasible", "optimal")
    costs = [c for _, _, c in res.trace]
    assert costs == sorted(costs, reverse=True) and costs[-1] >= res.cost - 1e-9


@given(instances(fixed_shape=True), st.integers(0, 3))
def test_fixed_shape_keeps_the_shape(case, seed):
    inst = make(*case)
    res = sa.local_annealing(inst, seed=seed, moves=1500, start="random" if seed % 2 else "greedy")
    assert res.solution.shape == inst.fixed_shape
    assert optimum(inst) - 1e-9 <= res.cost == rcprune.evaluate(inst, res.solution).cost


@given(st.one_of(instances(integer=True), instances(integer=True, fixed_shape=True)), st.integers(0, 2))
def test_numpy_mirror_makes_the_same_moves(case, seed):
    inst = make(*case)
    kw = dict(seed=seed, moves=400, chains=2, restarts=seed % 2, polish=False)
    fast, slow = sa.local_annealing(inst, **kw), sa.local_annealing_numpy(inst, **kw)
    assert fast.solution == slow.solution
    assert fast.info["accepted"] == slow.info["accepted"]
    assert fast.info["t0"] == slow.info["t0"]


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_numpy_mirror_on_a_float_instance_with_reshapes(seed, precision):
    inst = library.get("laplace-40x60")
    kw = dict(seed=seed, moves=3000, precision=precision)
    fast, slow = sa.local_annealing(inst, **kw), sa.local_annealing_numpy(inst, **kw)
    assert fast.solution == slow.solution and fast.info["accepted"] == slow.info["accepted"]
    assert fast.info["precision"] == slow.info["precision"] == precision


def test_precision_auto_reads_float32_copies_when_every_score_fits():
    inst = library.get("laplace-40x60")
    s32, s32_t = inst.scores_float32
    assert s32.dtype == s32_t.dtype == np.float32 and s32.flags.c_contiguous and s32_t.flags.c_contiguous
    assert np.array_equal(s32_t, s32.T) and np.abs(s32 - inst.scores).max() <= 2.0 ** -24 * inst.scores.max()
    chain = chain_for(inst)
    assert chain.precision == "float32" and chain.scores is s32
    res = sa.local_annealing(inst, seed=1, moves=5000)
    assert res.info["precision"] == "float32"
    assert res.cost == rcprune.evaluate(inst, res.solution).cost   # reported on the float64 scores
    assert all(cost >= res.cost for _, _, cost in res.trace) and res.trace[-1][2] == res.cost


@pytest.mark.parametrize("huge, tiny", [(1e39, 1.0), (1.0, 1e-40)])
def test_precision_auto_falls_back_to_float64_outside_float32_range(huge, tiny):
    inst = rcprune.Instance([[huge, 1.0, 0.0], [tiny, 2.0, 3.0]], budget=2)
    assert inst.scores_float32 is None
    res = sa.local_annealing(inst, moves=500)
    assert res.info["precision"] == "float64" and res.feasible
    with pytest.raises(rcprune.InvalidInstanceError, match="outside float32's normal range"):
        sa.local_annealing(inst, moves=500, precision="float32")


@pytest.mark.parametrize("name", ["laplace-40x60", "gaussian-40x60"])
def test_same_seed_same_answer_any_chunking_or_threads(name):
    inst = library.get(name)
    runs = [sa.local_annealing(inst, seed=7, moves=20_000, chains=3, parallel=p) for p in (False, True, False)]
    assert runs[0].solution == runs[1].solution == runs[2].solution
    assert runs[0].info["accepted"] == runs[1].info["accepted"]
    other = sa.local_annealing(inst, seed=8, moves=20_000, chains=3)
    assert other.info["accepted"] != runs[0].info["accepted"]  # the seed matters


def test_the_legacy_move_mix_option_is_gone():
    inst = library.get("laplace-40x60")
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="annealing", move_mix="even")
    assert "move_mix" not in sa.local_annealing(inst, moves=100).info


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


def chain_for(inst, seed=0, start="greedy", precision="auto"):
    masks, _ = start_masks(inst, start, seed, 1, {})
    return chain_mod.Chain(inst, *make_maximal(inst, *masks[0]), stream_seed(seed, 0), precision=precision)


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


@given(instances())
def test_pareto_shapes_and_completion(case):
    inst = make(*case)
    m, n, k = inst.m, inst.n, inst.budget
    rows, cols = moves.pareto_shapes(inst)
    undominated = {(r, c) for r in range(1, m + 1) for c in range(1, n + 1) if r * c <= k
                   and not ((r < m and (r + 1) * c <= k) or (c < n and r * (c + 1) <= k))}
    assert set(zip(rows.tolist(), cols.tolist())) == undominated
    rng = np.random.default_rng(0)
    r0 = rng.integers(0, m + 1)
    c0 = rng.integers(0, n + 1) if r0 == 0 else rng.integers(0, min(n, k // r0) + 1)
    start_rows = np.zeros(m, bool)
    start_rows[rng.choice(m, r0, replace=False)] = True
    start_cols = np.zeros(n, bool)
    start_cols[rng.choice(n, c0, replace=False)] = True
    full_rows, full_cols = make_maximal(inst, start_rows, start_cols)
    assert (full_rows.sum(), full_cols.sum()) in undominated
    assert kernels.kept_sum(inst.scores, full_rows, full_cols) >= kernels.kept_sum(inst.scores, start_rows, start_cols)


@given(instances())
def test_best_response_never_loses(case):
    inst = make(*case)
    greedy = greedy_row_column(inst)
    rows, cols = best_response(inst, greedy.solution.rows, greedy.solution.cols)
    assert rcprune.evaluate(inst, rcprune.Solution(rows, cols)).feasible
    assert kernels.kept_sum(inst.scores, rows, cols) >= greedy.kept_sum - 1e-9


def row_enumeration_optimum(inst: rcprune.Instance) -> float:
    """Exact optimum of a budget instance with few rows: for each row set the best columns are the top c."""
    subsets = np.array(list(itertools.product((0, 1), repeat=inst.m)), dtype=float)[1:]
    top = np.sort(subsets @ inst.scores, axis=1)[:, ::-1].cumsum(axis=1)
    r = subsets.sum(axis=1).astype(int)
    c = np.minimum(inst.n, inst.budget // r)
    kept = np.where(c >= 1, top[np.arange(len(r)), np.maximum(c, 1) - 1], -np.inf)
    return inst.total - kept.max()


def test_row_enumeration_agrees_with_brute_force():
    inst = rcprune.Instance(np.random.default_rng(1).random((6, 7)), budget=13)
    assert row_enumeration_optimum(inst) == pytest.approx(optimum(inst))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["laplace-12x16", "uniform-12x16", "gaussian-12x16", "planted-30x40"])
def test_within_half_a_percent_of_the_proven_optimum(name, seed):
    inst = library.get(name)
    best = inst.metadata["best_known_cost"] if name.startswith("planted") else row_enumeration_optimum(inst)
    res = sa.local_annealing(inst, seed=seed)
    assert best - 1e-9 <= res.cost <= best * 1.005


@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_time_limit(impl):
    inst = rcprune.generate("laplace", 200, 1500, seed=5, sparsity=0.9)
    solver = sa.local_annealing if impl == "numba" else sa.local_annealing_numpy
    tic = time.perf_counter()
    res = solver(inst, time_limit=0.5, moves=10**9, chains=2)
    assert time.perf_counter() - tic <= 1.1 * 0.5 + 0.5
    assert res.status == "time_limit" and res.feasible
    assert 0 < res.iterations < 2 * 10**9
    assert res.cost <= res.info["start_cost"] + 1e-9


def test_through_solve_and_the_greedy_bound():
    inst = library.get("planted-30x40")
    res = rcprune.solve(inst, method="annealing", seed=1, moves=50_000, chains=2)
    assert res.method == "annealing" and res.seed == 1
    assert res.lower_bound is None or res.lower_bound <= res.cost + 1e-9
    if res.lower_bound is not None:
        assert "lower_bound_source" in res.info
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="annealing", temperature=3)


@pytest.mark.parametrize("options, message", [
    ({"moves": 0}, "moves"), ({"moves": 2.5}, "moves"), ({"chains": 0}, "chains"),
    ({"restarts": -1}, "restarts"), ({"moves": 10, "restarts": 10}, "restarts"),
    ({"t0": 0.0}, "t0"), ({"t0": float("nan")}, "t0"), ({"t_end": -1.0}, "t_end"),
    ({"t0": 1.0, "t_end": 2.0}, "t_end"), ({"start": "best"}, "start"), ({"start": None}, "start"),
    ({"polish": "yes"}, "polish"), ({"parallel": 1}, "parallel"), ({"progress": None}, "progress"),
    ({"precision": "float16"}, "precision"), ({"precision": None}, "precision"),
    ({"start": rcprune.Solution([True, True, True], [True, True])}, "row mask"),
    ({"start": rcprune.Solution([True, True], [True, True, True])}, "infeasible"),
])
def test_bad_options(options, message):
    inst = rcprune.Instance(np.ones((2, 3)), budget=4)
    with pytest.raises(rcprune.InvalidInstanceError, match=message):
        sa.local_annealing(inst, **options)


def test_move_rate_reports_both_implementations():
    inst = library.get("laplace-40x60")
    for impl in ("numba", "numpy"):
        stats = sa.move_stats(inst, moves=2000, impl=impl)
        assert stats["moves_per_second"] > 0 and 0 <= stats["acceptance_rate"] <= 1
    with pytest.raises(rcprune.InvalidInstanceError, match="impl"):
        sa.move_rate(inst, impl="cuda")
    with pytest.raises(rcprune.InvalidInstanceError, match="moves"):
        sa.move_stats(inst, moves=0)
    with pytest.raises(rcprune.InvalidInstanceError, match="precision"):
        sa.move_stats(inst, moves=10, precision="float16")
