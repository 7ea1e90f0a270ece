"""Data-aware RC: the instance against the definition, the shared support's swap deltas against a
recomputation, both solvers against brute force over every (R, C)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, Instance, Solution
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.solvers.matrix.compensated_annealing import swap_delta
from rcprune.solvers.matrix.compensated_swap import SharedSupport, resize_costs

from tests.matrix.bruteforce import compensated_cost as cost_of, compensated_optimum as optimum
from tests.retention.bruteforce import refit_error

METHODS = ("structured-obs", "compensated-rc-swap", "compensated-rc-tabu", "compensated-rc-annealing")


@st.composite
def instances(draw, max_m=3, max_n=4):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m, n = draw(st.integers(1, max_m)), draw(st.integers(1, max_n))
    x = rng.normal(size=(n, 3 * n + 2))
    x += rng.normal(size=(n, n)) @ x * draw(st.floats(0.0, 1.5))
    w = rng.laplace(size=(m, n)) * rng.gamma(1.0, size=(m, 1))
    return Instance.from_layer(w, hessian=x @ x.T / x.shape[1], budget=draw(st.integers(1, m * n)))


@settings(deadline=None)
@given(instances(), st.data())
def test_evaluate_is_the_definition(inst, data):
    rows = np.array(data.draw(st.lists(st.booleans(), min_size=inst.m, max_size=inst.m)))
    cols = np.array(data.draw(st.lists(st.booleans(), min_size=inst.n, max_size=inst.n)))
    ev = rcprune.evaluate(inst, Solution(rows, cols))
    assert ev.cost == pytest.approx(cost_of(inst.weights, inst.hessian, rows, cols), rel=1e-7, abs=1e-9)
    assert np.all(ev.weights[~(rows[:, None] & cols[None, :])] == 0)
    assert ev.kept_count == rows.sum() * cols.sum() and ev.feasible == (ev.kept_count <= inst.budget)


@settings(deadline=None)
@given(instances(), st.sampled_from(METHODS))
def test_solvers_are_feasible_and_never_below_brute_force(inst, method):
    res = rcprune.solve(inst, method=method)
    opt = optimum(inst.weights, inst.hessian, inst.budget)
    assert res.feasible and res.status == "feasible"
    assert res.cost >= opt - 1e-8 * (1 + opt)
    assert res.cost == pytest.approx(rcprune.evaluate(inst, res.solution).cost)
    if method != "structured-obs":   # all start from structured-OBS (tabu and annealing from the swap search)
        start = "structured-obs" if method == "compensated-rc-swap" else "compensated-rc-swap"
        assert res.cost <= rcprune.solve(inst, method=start).cost * (1 + 1e-9) + 1e-12


@settings(deadline=None)
@given(instances(max_m=4, max_n=6), st.data())
def test_shared_support_swap_deltas_are_exact(inst, data):
    n = inst.n
    k = data.draw(st.integers(1, max(1, n - 1)))
    if not 0 < k < n:
        return
    cols = np.zeros(n, dtype=bool)
    cols[data.draw(st.permutations(range(n)))[:k]] = True
    rows = np.array(data.draw(st.lists(st.booleans(), min_size=inst.m, max_size=inst.m)))
    state = SharedSupport(inst.weights, inst.hessian, cols)
    w, h = inst.weights, inst.hessian
    assert np.allclose(state.errors, [refit_error(w[i], h, np.flatnonzero(cols)) for i in range(inst.m)],
                       rtol=1e-7, atol=1e-9)
    deltas, pruned = state.swap_deltas(np.flatnonzero(rows))
    base = cost_of(w, h, rows, cols)
    for j, p in enumerate(state.slots):
        for b, q in enumerate(pruned):
            trial = cols.copy()
            trial[p], trial[q] = False, True
            assert deltas[j, b] == pytest.approx(cost_of(w, h, rows, trial) - base, rel=1e-6, abs=1e-8)
            # the annealing's one-pair score is the same entry
            assert swap_delta(state, np.flatnonzero(rows), j, int(q)) == pytest.approx(deltas[j, b], rel=1e-9, abs=1e-12)
    drop, add, outside = resize_costs(inst, state)
    for costs, changed in ((drop, [cols ^ np.eye(n, dtype=bool)[p] for p in state.slots]),
                           (add, [cols | np.eye(n, dtype=bool)[q] for q in outside])):
        for cost, trial in zip(costs, changed):
            r = inst.rows_for(int(trial.sum())) if trial.any() else 0
            best = min(cost_of(w, h, np.isin(np.arange(inst.m), kept), trial)
                       for kept in itertools.combinations(range(inst.m), r))
            assert cost == pytest.approx(best, rel=1e-6, abs=1e-8)
    j, b = data.draw(st.integers(0, k - 1)), data.draw(st.integers(0, n - k - 1))
    trial = cols.copy()
    trial[state.slots[j]], trial[pruned[b]] = False, True
    state.swap(j, int(pruned[b]))
    fresh = SharedSupport(w, h, trial)
    assert np.allclose(state.v, fresh.v, rtol=1e-7, atol=1e-9) and np.allclose(state.g, fresh.g, rtol=1e-7, atol=1e-9)
    assert np.allclose(state.errors, fresh.errors, rtol=1e-7, atol=1e-9)


def test_from_layer_and_errors():
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert isinstance(Instance.from_layer(w, budget=2), Instance)
    inst = Instance.from_layer(w, hessian=np.eye(2), sparsity=0.5)
    assert isinstance(inst, CompensatedInstance) and inst.kind == "matrix" and inst.budget == 2
    assert rcprune.solve(inst).method == "compensated-rc-tabu"
    with pytest.raises(InvalidInstanceError, match="methods for it: structured-obs, compensated-rc-swap, compensated-rc-tabu, compensated-rc-exact, "
                       "compensated-rc-annealing"):
        rcprune.solve(inst, method="annealing")
    with pytest.raises(InvalidInstanceError, match="objective.*scores"):
        rcprune.solve(Instance.from_layer(w, budget=2), method="structured-obs")
    with pytest.raises(InvalidInstanceError, match="damping applies to a hessian"):
        Instance.from_layer(w, budget=1, damping=0.1)
    with pytest.raises(InvalidInstanceError, match="shape mismatch"):
        Instance.from_layer(w, hessian=np.eye(3), budget=1)
    with pytest.raises(InvalidInstanceError, match="positive definite"):
        Instance.from_layer(w, hessian=np.ones((2, 2)), budget=1, damping=0)
    with pytest.raises(InvalidInstanceError):
        Instance.from_layer(w, hessian=[[1.0, np.nan], [np.nan, 1.0]], budget=1)
    with pytest.raises(InvalidInstanceError, match="max_moves"):
        rcprune.solve(inst, method="compensated-rc-swap", max_moves=-2)
    assert rcprune.method_names("matrix", objective="compensated") == ["structured-obs", "compensated-rc-swap",
                                                                        "compensated-rc-tabu", "compensated-rc-exact",
                                                                        "compensated-rc-annealing"]
    with pytest.raises(InvalidInstanceError, match="tenure"):
        rcprune.solve(inst, method="compensated-rc-tabu", tenure=-1)


@settings(deadline=None)
@given(instances())
def test_exact_is_the_brute_force_optimum_and_proves_it(inst):
    res = rcprune.solve(inst, method="compensated-rc-exact")
    opt = optimum(inst.weights, inst.hessian, inst.budget)
    assert res.status == "optimal" and res.feasible
    assert res.cost == pytest.approx(opt, rel=1e-7, abs=1e-9)
    assert res.lower_bound <= res.cost + 1e-9 * (1 + res.cost)
    for method in METHODS:
        assert rcprune.solve(inst, method=method).cost >= res.cost - 1e-8 * (1 + res.cost)


def test_exact_with_a_fixed_shape_a_time_limit_and_a_size_limit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 30))
    inst = Instance.from_layer(rng.laplace(size=(3, 5)), hessian=x @ x.T / 30, shape=(2, 3))
    res = rcprune.solve(inst, method="compensated-rc-exact")
    best = min(cost_of(inst.weights, inst.hessian, np.array(r), np.array(c))
               for r in itertools.product([False, True], repeat=3) for c in itertools.product([False, True], repeat=5)
               if sum(r) == 2 and sum(c) == 3)
    assert res.status == "optimal" and res.cost == pytest.approx(best, rel=1e-7)
    assert res.solution.rows.sum() == 2 and res.solution.cols.sum() == 3
    x = rng.normal(size=(16, 60))
    big = Instance.from_layer(rng.laplace(size=(8, 16)), hessian=x @ x.T / 60, sparsity=0.5)
    cut = rcprune.solve(big, method="compensated-rc-exact", time_limit=1e-9)
    assert cut.status == "time_limit" and cut.lower_bound is None and cut.feasible
    assert cut.cost <= rcprune.solve(big, method="structured-obs").cost + 1e-12
    x = rng.normal(size=(17, 60))
    with pytest.raises(InvalidInstanceError, match="n <= 16"):
        rcprune.solve(Instance.from_layer(rng.laplace(size=(2, 17)), hessian=x @ x.T / 60, sparsity=0.5),
                      method="compensated-rc-exact")


@settings(deadline=None)
@given(instances(max_m=4, max_n=7), st.integers(2, 4))
def test_block_elimination_is_exact_at_its_boundaries(inst, block):
    from rcprune.compensation import compensated_refit
    from rcprune.solvers.matrix.structured_obs import eliminate_columns

    order, errors = eliminate_columns(inst, block=block, stop=1)
    assert sorted(order.tolist()) == list(range(inst.n))
    boundaries = [t for t in range(inst.n + 1) if not np.isnan(errors[t]).any()]
    assert 1 in boundaries and inst.n in boundaries and 0 in boundaries
    assert all(b - a <= block for a, b in zip(boundaries, boundaries[1:]))
    for t in boundaries:
        keep = np.ones(inst.n, bool)
        keep[order[:t]] = False
        _, exact = compensated_refit(inst.weights, inst.hessian, np.tile(keep, (inst.m, 1)))
        np.testing.assert_allclose(errors[t], exact, rtol=1e-6, atol=1e-9 * (1 + inst.energies.max()))
    res = rcprune.solve(inst, method="structured-obs", block=block)
    assert res.feasible and res.cost == pytest.approx(rcprune.evaluate(inst, res.solution).cost)
    assert res.cost >= optimum(inst.weights, inst.hessian, inst.budget) - 1e-8 * (1 + res.cost)


def test_block_elimination_lands_on_a_fixed_shape():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 40))
    inst = Instance.from_layer(rng.laplace(size=(4, 9)), hessian=x @ x.T / 40, shape=(3, 4))
    res = rcprune.solve(inst, method="structured-obs", block=3)
    assert res.solution.rows.sum() == 3 and res.solution.cols.sum() == 4 and res.info["block"] == 3
    with pytest.raises(InvalidInstanceError, match="block"):
        rcprune.solve(inst, method="structured-obs", block=0)


def _swap_trap(seed: int = 41):
    """A 4 x 7 layer where the swap search (and the tabu walk from it) stops above the optimum."""
    rng = np.random.default_rng(seed)
    m, n = 4, 7
    x = rng.normal(size=(n, 3 * n + 2))
    x += rng.normal(size=(n, n)) @ x * 0.8
    w = rng.laplace(size=(m, n)) * rng.gamma(1.0, size=(m, 1))
    return Instance.from_layer(w, hessian=x @ x.T / x.shape[1], budget=int(rng.integers(6, 16)))


def test_annealing_leaves_the_swap_searchs_local_optimum_for_the_proven_one():
    inst = _swap_trap()
    opt = rcprune.solve(inst, method="compensated-rc-exact")
    assert opt.lower_bound == pytest.approx(opt.cost)          # proven
    swap = rcprune.solve(inst, method="compensated-rc-swap")
    assert swap.cost > opt.cost * 1.1                            # a local optimum 14% above
    sa = rcprune.solve(inst, method="compensated-rc-annealing", seed=0, proposals=2000)
    assert sa.cost == pytest.approx(opt.cost, rel=1e-9) and sa.info["accepted"] > 0
    assert sa.info["start_cost"] == pytest.approx(swap.cost)
    again = rcprune.solve(inst, method="compensated-rc-annealing", seed=0, proposals=2000)
    assert again.solution == sa.solution and again.info == sa.info


@pytest.mark.parametrize("kwargs, match", [({"proposals": -1}, "proposals"), ({"acceptance": 1.0}, "acceptance"),
                                           ({"final": 0.0}, "final"), ({"seed": -3}, "seed")])
def test_annealing_options_are_checked(kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        rcprune.solve(_swap_trap(), method="compensated-rc-annealing", **kwargs)
