"""Simulated annealing: feasible, never below the brute-force optimum nor above its start, deterministic,
its numpy mirror move-for-move equal, its time limit kept, its options checked. The chain, its moves and its
start and polish have their own test files (test_annealing_chain, _moves, _start)."""
import dataclasses
import inspect
import itertools

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import rcprune
from rcprune import library
from rcprune.solvers.matrix import annealing as sa
from rcprune.solvers.matrix.annealing_chain import DONE, Chain
from rcprune.solvers.matrix.annealing_reference import NumpyChain
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

from tests.clock import simulated_clock
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances
from tests.solvers.matrix.test_annealing_chain import chain_for


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


def test_options_are_checked_once_into_a_frozen_dataclass_with_the_solver_defaults():
    inst = library.get("laplace-40x60")
    options = sa.AnnealingOptions.checked(inst, moves=500, chains=2)
    assert (options.moves, options.chains, options.precision) == (500, 2, "float32")  # "auto" resolved
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.moves = 10
    defaults = sa.AnnealingOptions()
    for name, param in inspect.signature(sa.local_annealing).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("seed", "time_limit"):
            assert getattr(defaults, name) == param.default, name
    assert {f.name for f in dataclasses.fields(sa.AnnealingOptions)} == set(
        inspect.signature(sa.local_annealing).parameters) - {"instance", "seed", "time_limit"}
    with pytest.raises(TypeError):
        sa.AnnealingOptions.checked(inst, temperature=3)


def test_the_legacy_move_mix_option_is_gone():
    inst = library.get("laplace-40x60")
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="annealing", move_mix="even")
    assert "move_mix" not in sa.local_annealing(inst, moves=100).info


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
def test_a_tiny_time_limit_stops_before_the_first_chunk(impl):
    inst = library.get("laplace-40x60")
    solver = sa.local_annealing if impl == "numba" else sa.local_annealing_numpy
    res = solver(inst, time_limit=1e-9, moves=10**9, chains=2)
    assert res.status == "time_limit" and res.iterations == 0 and res.info["accepted"] == 0
    assert res.feasible and res.cost == rcprune.evaluate(inst, res.solution).cost
    assert res.cost <= res.info["start_cost"] + 1e-9


@pytest.mark.parametrize("chains", [1, 3])
@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_time_limit_sizes_the_chunks_to_stop_at_the_deadline(monkeypatch, impl, chains):
    """Simulated clock: every move takes per_move seconds. The chunks are sized to end at the deadline,
    so the search stops past the limit by less than one minimal chunk (1000 moves per chain), and all of
    the simulated time went into moves."""
    per_move, limit = 1e-6, 0.03
    inst = library.get("laplace-40x60")
    clock = simulated_clock(monkeypatch, sa)
    for cls in (Chain, NumpyChain):
        monkeypatch.setattr(cls, "run", _timed_run(cls.run, clock, per_move))
    solver = sa.local_annealing if impl == "numba" else sa.local_annealing_numpy
    res = solver(inst, time_limit=limit, moves=10**9, chains=chains)
    assert res.status == "time_limit" and res.feasible
    assert limit <= res.runtime <= limit + chains * 1000 * per_move + 1e-12
    assert res.runtime == pytest.approx(res.iterations * per_move, rel=1e-9)
    assert res.cost == rcprune.evaluate(inst, res.solution).cost and res.cost <= res.info["start_cost"] + 1e-9


def _timed_run(run, clock, per_move):
    def timed(chain, chunk):
        before = int(chain.counts[DONE])
        run(chain, chunk)
        clock.advance((int(chain.counts[DONE]) - before) * per_move)
    return timed


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


def test_move_rate_reports_both_implementations(monkeypatch):
    """Simulated clock: a move takes 2 us, so the timed 2000-move chain (its warm-up excluded) takes
    4 ms and runs 500,000 moves per second; numba and numpy run the same moves, so they accept the same."""
    inst = library.get("laplace-40x60")
    clock = simulated_clock(monkeypatch, sa)
    for cls in (Chain, NumpyChain):
        monkeypatch.setattr(cls, "run", _timed_run(cls.run, clock, 2e-6))
    stats = {impl: sa.move_stats(inst, moves=2000, impl=impl) for impl in ("numba", "numpy")}
    for impl, st_ in stats.items():
        assert st_["impl"] == impl and st_["seconds"] == pytest.approx(2000 * 2e-6, rel=1e-9)
        assert st_["moves_per_second"] == pytest.approx(500_000, rel=1e-9)
        assert st_["acceptance_rate"] * 2000 == round(st_["acceptance_rate"] * 2000)
    assert stats["numba"]["acceptance_rate"] == stats["numpy"]["acceptance_rate"]
    assert 0 < stats["numba"]["acceptance_rate"] < 1
    assert sa.move_rate(inst, moves=2000) == pytest.approx(500_000, rel=1e-9)
    with pytest.raises(rcprune.InvalidInstanceError, match="impl"):
        sa.move_rate(inst, impl="cuda")
    with pytest.raises(rcprune.InvalidInstanceError, match="moves"):
        sa.move_stats(inst, moves=0)
    with pytest.raises(rcprune.InvalidInstanceError, match="precision"):
        sa.move_stats(inst, moves=10, precision="float16")
