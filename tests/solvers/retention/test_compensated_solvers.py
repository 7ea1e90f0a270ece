"""Solvers of the compensated objective: OBC against an elimination written from the definition, the swap
search never above its start and locally optimal, the exact enumeration equal to brute force."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance
from rcprune.retention.compensated import swap_deltas_reference
from rcprune.solvers.retention.compensated_exact import compensated_exact, enumerable
from rcprune.solvers.retention.obc import obc
from rcprune.solvers.retention.sparsegpt import sparsegpt
from rcprune.solvers.retention.swap import retention_swap

from tests.clock import simulated_clock
from tests.retention.bruteforce import compensated_optimum, refit_error

SOLVERS = ("obc", "sparsegpt", "compensated-swap", "compensated-tabu", "compensated-annealing", "compensated-exact")


def tol(x):
    return 1e-8 * (1.0 + abs(x))


@st.composite
def instances(draw, max_m=3, max_n=6, scope=None):
    """Continuous weights and correlated inputs (no ties), a row or layer budget."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m, n = draw(st.integers(1, max_m)), draw(st.integers(1, max_n))
    x = rng.normal(size=(n, 3 * n + 2))
    x += rng.normal(size=(n, n)) @ x * draw(st.floats(0.0, 1.5))
    w = rng.laplace(size=(m, n))
    scope = scope or draw(st.sampled_from(["row", "layer"]))
    if scope == "layer" and m * n > 12:
        m, w = 1, w[:1]
    k = draw(st.integers(0, n if scope == "row" else m * n))
    return RetentionInstance(w, x @ x.T / x.shape[1], k=k, scope=scope)


def obs_elimination(w, h, k):
    """Drop, one at a time, the weight whose removal (others refit) raises the error least."""
    kept = list(range(w.shape[0]))
    while len(kept) > k:
        kept.remove(min(kept, key=lambda p: refit_error(w, h, [j for j in kept if j != p])))
    return kept


@settings(deadline=None)
@given(instances(scope="row"))
def test_obc_is_the_obs_elimination(inst):
    res = obc(inst)
    for i in range(inst.m):
        assert sorted(np.flatnonzero(res.solution.mask[i])) == sorted(obs_elimination(inst.weights[i], inst.hessian, inst.k))


@settings(deadline=None)
@given(instances(), st.sampled_from(SOLVERS))
def test_feasible_never_below_the_optimum_and_exact_proves_it(inst, method):
    res = rcprune.solve(inst, method=method)
    opt = compensated_optimum(inst.weights, inst.hessian, inst.k, inst.scope)
    assert res.feasible and res.kept_count == inst.total_kept
    assert res.cost >= opt - tol(opt)
    if method == "compensated-exact":
        assert res.status == "optimal" and res.cost == pytest.approx(opt, rel=1e-7, abs=1e-9)
    else:
        assert res.status == "feasible"


@settings(deadline=None)
@given(instances(), st.sampled_from(["obc", "magnitude"]))
def test_swap_improves_its_start_to_a_local_optimum(inst, start):
    res = retention_swap(inst, start=start)
    begin = rcprune.solve(inst, method=start).cost
    assert res.cost <= begin + tol(begin)
    mask = res.solution.mask
    for i in range(inst.m):    # no improving swap left in any row
        if 0 < mask[i].sum() < inst.n:
            assert swap_deltas_reference(inst.weights[i], inst.hessian, mask[i]).min() >= -1e-7 * (1 + res.cost)
    if inst.scope == "layer":  # nor an improving move of one kept weight to another row
        ev = rcprune.evaluate(inst, mask)
        for a in range(inst.m):
            for b in range(inst.m):
                if a == b:
                    continue
                for p in np.flatnonzero(mask[a]):
                    for q in np.flatnonzero(~mask[b]):
                        trial = mask.copy()
                        trial[a, p], trial[b, q] = False, True
                        assert rcprune.evaluate(inst, trial).cost >= ev.cost - 1e-7 * (1 + ev.cost)


@settings(deadline=None)
@given(instances())
def test_tabu_is_never_worse_than_obc(inst):
    res = rcprune.solve(inst, method="compensated-tabu", iterations=20)
    start = rcprune.solve(inst, method="obc").cost
    assert res.feasible and res.cost <= start + tol(start)


@settings(deadline=None)
@given(instances(max_n=8), st.integers(1, 8), st.integers(0, 7))
def test_tabu_from_sparsegpt_with_few_candidates_is_never_worse_than_sparsegpt(inst, candidates, tenure):
    res = rcprune.solve(inst, method="compensated-tabu", start="sparsegpt", candidates=candidates, tenure=tenure,
                        iterations=20)
    start = rcprune.solve(inst, method="sparsegpt").cost
    assert res.feasible and res.cost <= start + tol(start)
    assert res.info["start"] == "sparsegpt" and res.info["candidates"] == min(candidates, inst.n)
    assert abs(res.cost - rcprune.evaluate(inst, res.solution).cost) <= tol(res.cost)


@settings(deadline=None)
@given(instances(max_n=8), st.sampled_from(["obc", "sparsegpt"]), st.integers(1, 8), st.integers(0, 2**31))
def test_annealing_is_never_worse_than_its_start_and_depends_on_the_seed_only(inst, start, candidates, seed):
    res = rcprune.solve(inst, method="compensated-annealing", start=start, candidates=candidates, proposals=300,
                        seed=seed)
    first = rcprune.solve(inst, method=start).cost
    assert res.feasible and res.cost <= first + tol(first)
    assert abs(res.cost - rcprune.evaluate(inst, res.solution).cost) <= tol(res.cost)
    again = rcprune.solve(inst, method="compensated-annealing", start=start, candidates=candidates, proposals=300,
                          seed=seed)
    assert np.array_equal(again.solution.mask, res.solution.mask) and again.info == res.info


def test_annealing_finds_the_optimum_of_small_rows_and_refuses_bad_options():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 30))
    x[1] += x[0]
    inst = RetentionInstance(rng.laplace(size=(3, 7)), x @ x.T / 30, k=3)
    best = compensated_optimum(inst.weights, inst.hessian, inst.k)
    assert rcprune.solve(inst, method="sparsegpt").cost > best + tol(best)     # a start with room to improve
    res = rcprune.solve(inst, method="compensated-annealing", start="sparsegpt", proposals=3000, seed=1)
    assert res.info["accepted"] > 0 and res.cost <= best + tol(best)      # 35 supports per row: it finds the best
    for bad in ({"proposals": -1}, {"acceptance": 1.0}, {"acceptance": 0.0}, {"final": 0.0}, {"final": 2.0},
                {"start": "magnitude"}, {"candidates": 0}, {"seed": -1}):
        with pytest.raises(InvalidInstanceError):
            rcprune.solve(inst, method="compensated-annealing", **bad)


def test_tabu_start_auto_takes_obc_on_small_layers_and_sparsegpt_on_large(monkeypatch):
    import rcprune.solvers.retention.compensated_start as tabu

    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 60))
    inst = RetentionInstance(rng.laplace(size=(4, 12)), x @ x.T / 60, sparsity=0.75)
    small = rcprune.solve(inst, method="compensated-tabu", iterations=5)
    assert small.info["start"] == "obc" and small.info["candidates"] == inst.n
    monkeypatch.setattr(tabu, "OBC_WORK", inst.m * inst.n ** 3 / 3 - 1)     # as if the layer were large
    large = rcprune.solve(inst, method="compensated-tabu", iterations=5)
    assert large.info["start"] == "sparsegpt" and large.info["candidates"] == min(tabu.CANDIDATES, inst.n)
    assert large.cost <= rcprune.solve(inst, method="sparsegpt").cost + tol(large.cost)
    for bad in ({"start": "greedy"}, {"candidates": 0}, {"candidates": 2.5}):
        with pytest.raises(InvalidInstanceError, match="start must be one of|candidates"):
            rcprune.solve(inst, method="compensated-tabu", **bad)


def test_inverse_factor_is_the_cholesky_factor_of_the_inverse():
    from rcprune.solvers.retention.sparsegpt import inverse_factor

    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 30))
    h = x @ x.T / 30
    u = inverse_factor(h)
    assert np.allclose(u, np.triu(u)) and (np.diag(u) > 0).all()
    assert np.allclose(u, np.linalg.cholesky(np.linalg.inv(h)).T, rtol=1e-9, atol=1e-12)


@settings(deadline=None)
@given(instances(scope="row"), st.integers(1, 4))
def test_sparsegpt_with_a_diagonal_hessian_keeps_the_top_scores_of_each_block(inst, block):
    h = np.diag(np.diag(inst.hessian))
    diag = RetentionInstance(inst.weights, h, k=inst.k, damping=0)
    keep = sparsegpt(diag, block=block).solution.mask
    score = inst.weights ** 2 * np.diag(h)[None, :]       # no correlations: the sweep changes nothing
    for i in range(inst.m):
        for lo in range(0, inst.n, block):
            kept, pruned = score[i, lo:lo + block][keep[i, lo:lo + block]], score[i, lo:lo + block][~keep[i, lo:lo + block]]
            assert kept.size == 0 or pruned.size == 0 or kept.min() >= pruned.max()
    assert (keep.sum(axis=1) == inst.k).all()


def test_swap_max_moves_and_bad_options():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 40))
    x[1] += x[0]
    inst = RetentionInstance(rng.laplace(size=(3, 8)), x @ x.T / 40, k=3)
    assert retention_swap(inst, start="magnitude", max_moves=1).iterations <= 1
    with pytest.raises(InvalidInstanceError, match="start must be one of"):
        retention_swap(inst, start="greedy")
    with pytest.raises(InvalidInstanceError, match="max_moves"):
        retention_swap(inst, max_moves=-1)
    for bad in ({"iterations": -1}, {"tenure": 1.5}):
        with pytest.raises(InvalidInstanceError, match="iterations|tenure"):
            rcprune.solve(inst, method="compensated-tabu", **bad)


def test_exact_refuses_long_rows_and_a_time_limit_keeps_a_valid_bound():
    rng = np.random.default_rng(1)
    with pytest.raises(InvalidInstanceError, match="n <= 16 weights under a layer budget"):
        compensated_exact(RetentionInstance(rng.normal(size=(2, 17)), np.eye(17), k=3, scope="layer"))
    with pytest.raises(InvalidInstanceError, match=r"65,536 supports per row; .* C\(n, k\) = 847,660,528"):
        compensated_exact(RetentionInstance(rng.normal(size=(1, 40)), np.eye(40), k=10))
    x = rng.normal(size=(10, 60))
    inst = RetentionInstance(rng.laplace(size=(3000, 10)) * 1e-4, x @ x.T / 60, k=5)   # tiny errors
    res = compensated_exact(inst, time_limit=0.05)
    proven = res.info["proven_rows"]
    assert res.feasible and 0 < proven < inst.m and res.status == "time_limit"   # never "optimal" unproven
    optima = [compensated_optimum(inst.weights[i:i + 1], inst.hessian, 5) for i in range(proven)]
    assert res.lower_bound == pytest.approx(sum(optima), rel=1e-7, abs=1e-18)


def test_exact_proves_long_rows_whose_supports_are_few():
    """n = 32, k = 3 (a 1x1 conv over 32 channels at 90% removed): C(32, 3) = 4,960 supports per row; each
    row's optimum checked by least squares on every support (not the solver's formula)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 200))
    inst = RetentionInstance(rng.normal(size=(2, 32)), x @ x.T / 200, k=3)
    assert enumerable(inst) and not enumerable(RetentionInstance(inst.weights, inst.hessian, k=9))
    res = compensated_exact(inst)
    assert res.status == "optimal" and res.lower_bound == pytest.approx(res.cost, rel=1e-12)
    l_factor = np.linalg.cholesky(inst.hessian).T     # error = |L (w - x)|^2 with x on the support
    best = 0.0
    for w in inst.weights:
        errors = []
        for s in itertools.combinations(range(32), 3):
            a = l_factor[:, list(s)]
            coef = np.linalg.lstsq(a, l_factor @ w, rcond=None)[0]
            errors.append(float(np.sum((l_factor @ w - a @ coef) ** 2)))
        best += min(errors)
    assert res.cost == pytest.approx(best, rel=1e-8)


def test_time_limits_keep_finished_rows_and_stay_feasible():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 600))
    inst = RetentionInstance(rng.laplace(size=(400, 256)), x @ x.T / 600, sparsity=0.9)
    for method in ("obc", "sparsegpt", "compensated-swap", "compensated-tabu"):
        res = rcprune.solve(inst, method=method, time_limit=0.2 if method != "sparsegpt" else 1e-9)
        assert res.feasible and res.status == "time_limit" and res.runtime < 5.0, method


def test_obc_time_limit_keeps_the_rows_finished_before_it(monkeypatch):
    import rcprune.solvers.retention.obc as obc_module

    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 600))
    inst = RetentionInstance(rng.laplace(size=(100, 256)), x @ x.T / 600, sparsity=0.9)
    clock, real = simulated_clock(monkeypatch), obc_module.eliminate

    def eliminate(*args):        # each block of rows takes one simulated second
        real(*args)
        clock.advance(1.0)

    monkeypatch.setattr(obc_module, "eliminate", eliminate)
    done = obc(inst, time_limit=0.5)
    monkeypatch.undo()
    full = obc(inst).solution.mask
    reached = int(np.argmin([np.array_equal(a, b) for a, b in zip(done.solution.mask, full)] + [False]))
    assert done.status == "time_limit" and 0 < reached < inst.m      # one block of rows, OBC's
    assert np.array_equal(done.solution.mask[reached:], rcprune.solve(inst, method="magnitude").solution.mask[reached:])


def test_obc_layer_budget_splits_over_rows_by_its_curves():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 30))
    x[2] += 0.9 * x[1]
    w = rng.laplace(size=(3, 6)) * np.array([[10.0], [1.0], [0.1]])    # rows of very different energy
    inst = RetentionInstance(w, x @ x.T / 30, k=9, scope="layer")
    res = obc(inst)
    counts = res.solution.mask.sum(axis=1)
    assert counts.sum() == 9 and counts[0] > counts[2]
