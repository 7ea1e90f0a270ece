"""One conformance check for every registered method of every problem kind (as scikit-learn's
``check_estimator`` is for estimators): a method is covered the moment it is registered in
``rcprune.solvers.METHODS``.

For each method, on small instances whose optimum a brute force written from the definitions knows: the
result is a :class:`rcprune.SolveResult` of that method; its solution is feasible and ``rcprune.evaluate``
agrees with its cost, kept sum and kept count; the cost is never below the optimum and ``lower_bound`` never
above it; ``status == "optimal"`` only with a bound that meets the cost (and then the cost is the optimum);
the same seed gives the same answer; a time limit is kept within a tolerance; a bad option, seed or time
limit is an ``InvalidInstanceError``.
"""
from __future__ import annotations

import numpy as np
import pytest

import rcprune
from rcprune.network.generate import random_network, resnet_network
from rcprune.solvers import DEFAULT_METHODS, METHODS, OBJECTIVES, RETENTION_OBJECTIVES
from tests.matrix.bruteforce import brute_force
from tests.matrix.bruteforce import compensated_optimum as rc_compensated_optimum
from tests.network.bruteforce import network_brute_force
from tests.retention.bruteforce import compensated_optimum
from tests.retention.bruteforce import optimum as retention_optimum

CASES = [(kind, method) for kind in METHODS for method in METHODS[kind]]
EXACT = ("enumeration", "cpsat", "network-cpsat", "retention-exact", "compensated-exact", "compensated-rc-exact")
TIME_LIMIT = 1.0
TIME_SLACK = 4.0  # seconds past the limit: a method checks its clock between steps, not inside them


def _tol(total: float) -> float:
    return 1e-9 * (1.0 + abs(total))


def _objective(method: str | None) -> str:
    """The retention objective a method is checked on: its first (the default objective for None)."""
    return "compensated" if method is None else RETENTION_OBJECTIVES[method][0]


def small_instances(kind: str, method: str | None = None):
    """(instance, optimal cost) pairs; the optimum from brute force, not from rcprune."""
    rng = np.random.default_rng(7)
    if kind == "matrix" and method is not None and OBJECTIVES["matrix"][method] == ("compensated",):
        out = []
        for m, n, budget in ((2, 3, 2), (3, 3, 4)):
            x = rng.standard_normal((n, 3 * n))
            x[1] += 0.9 * x[0]
            inst = rcprune.Instance.from_layer(rng.laplace(size=(m, n)), hessian=x @ x.T / x.shape[1], budget=budget)
            out.append((inst, rc_compensated_optimum(inst.weights, inst.hessian, budget)))
        return out
    if kind == "matrix":
        out = []
        for m, n, budget in ((4, 5, 6), (5, 3, 7), (3, 6, 1)):
            s = np.abs(rng.laplace(size=(m, n)))
            out.append((rcprune.Instance(s, budget=budget), brute_force(s, budget=budget)[0]))
        s = rng.integers(0, 5, size=(4, 4)).astype(float)
        out.append((rcprune.Instance(s, shape=(2, 3)), brute_force(s, shape=(2, 3))[0]))
        return out
    if kind == "network":
        out = []
        for seed in (1, 4):
            net = random_network(seed, n_layers=3, max_channels=2, max_block=2)
            cost = network_brute_force(net)[0]
            if np.isfinite(cost):
                out.append((net, cost))
        return out
    out = []
    for m, n, k, scope in ((2, 4, 2, "row"), (2, 3, 3, "layer")):
        w = rng.standard_normal((m, n))
        x = rng.standard_normal((n, 3 * n))
        x[1] += 0.9 * x[0]  # correlated inputs: the optimum is not magnitude's
        h = x @ x.T / x.shape[1]
        inst = rcprune.RetentionInstance(w, h, k=k, scope=scope, objective=_objective(method))
        brute = compensated_optimum if inst.objective == "compensated" else retention_optimum
        out.append((inst, brute(inst.weights, inst.hessian, k, scope)))
    return out


def large_instance(kind: str, method: str | None = None):
    rng = np.random.default_rng(3)
    if kind == "matrix" and OBJECTIVES["matrix"].get(method) == ("compensated",):
        x = rng.standard_normal((576, 2000))
        return rcprune.Instance.from_layer(rng.laplace(size=(64, 576)), hessian=x @ x.T / 2000, sparsity=0.9)
    if kind == "matrix":
        return rcprune.library.get("laplace-64x576")
    if kind == "network":
        return resnet_network(18, seed=0, width=1 / 8, num_classes=10, sparsity=0.9)
    w = rng.standard_normal((16, 72))
    x = rng.standard_normal((72, 400))
    return rcprune.RetentionInstance(w, x @ x.T / 400, sparsity=0.9, damping=0.01, objective=_objective(method))


def _flat_mask(solution) -> np.ndarray:
    mask = solution.mask
    if isinstance(mask, dict):
        return np.concatenate([np.ravel(mask[k]) for k in sorted(mask)])
    return np.ravel(mask)


@pytest.mark.parametrize("kind,method", CASES)
def test_results_are_feasible_evaluated_and_bounded_by_the_optimum(kind, method):
    for inst, opt in small_instances(kind, method):
        res = rcprune.solve(inst, method=method, seed=3)
        assert isinstance(res, rcprune.SolveResult) and res.method == method and res.seed == 3
        ev = rcprune.evaluate(inst, res.solution)
        assert res.feasible and ev.feasible, (method, inst)
        assert res.cost == pytest.approx(ev.cost, abs=_tol(opt)) and res.kept_count == ev.kept_count
        assert res.kept_sum == pytest.approx(ev.kept_sum, rel=1e-9, abs=1e-12)
        assert res.cost >= opt - _tol(opt), (method, res.cost, opt)
        if res.lower_bound is not None:
            assert res.lower_bound <= opt + _tol(opt) and res.lower_bound <= res.cost + _tol(opt)
            assert res.gap is not None and 0.0 <= res.gap <= 1.0
        assert res.status in ("optimal", "feasible", "time_limit")
        if res.status == "optimal":
            assert res.lower_bound is not None and res.cost - res.lower_bound <= 1e-6 * (1 + res.cost)
            assert res.cost == pytest.approx(opt, rel=1e-6, abs=1e-9)
        summary = res.summary()
        assert summary["method"] == method and summary["cost"] == res.cost


@pytest.mark.parametrize("kind,method", CASES)
def test_same_seed_same_answer(kind, method):
    inst = small_instances(kind, method)[0][0]
    a = rcprune.solve(inst, method=method, seed=11)
    b = rcprune.solve(inst, method=method, seed=11)
    assert np.array_equal(_flat_mask(a.solution), _flat_mask(b.solution)) and a.cost == b.cost


@pytest.mark.parametrize("kind,method", CASES)
def test_time_limit_is_kept(kind, method):
    inst = large_instance(kind, method)
    try:
        res = rcprune.solve(inst, method=method, seed=0, time_limit=TIME_LIMIT)
    except rcprune.InvalidInstanceError as exc:  # an exact method may refuse a size outright, saying why
        assert method in EXACT and str(exc), (method, exc)
        return
    assert res.runtime <= TIME_LIMIT + TIME_SLACK, (method, res.runtime)
    assert res.feasible


@pytest.mark.parametrize("kind,method", CASES)
def test_bad_options_are_invalid_instance_errors(kind, method):
    inst = small_instances(kind, method)[0][0]
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method=method, no_such_option=1)
    for bad in ({"seed": -1}, {"seed": "x"}, {"seed": 1.5}, {"time_limit": "abc"}, {"time_limit": -1.0},
                {"time_limit": float("nan")}, {"time_limit": True}, {"progress": "yes"}):
        with pytest.raises(rcprune.InvalidInstanceError):
            rcprune.solve(inst, method=method, **bad)


@pytest.mark.parametrize("kind", list(METHODS))
def test_every_kind_has_a_default_and_a_listing(kind):
    inst = small_instances(kind)[0][0]
    assert rcprune.solve(inst).method == DEFAULT_METHODS[kind] in rcprune.method_names(kind)
    assert inst.kind == kind
    other = next(m for k, ms in METHODS.items() if k != kind for m in ms)
    with pytest.raises(rcprune.InvalidInstanceError, match=f"for a {kind} instance"):
        rcprune.solve(inst, method=other)
    assert set(rcprune.method_names()) == {m for ms in METHODS.values() for m in ms}


def test_unknown_kinds_are_refused():
    for bad in (np.ones((2, 2)), "instance", None):
        with pytest.raises(rcprune.InvalidInstanceError, match="expected a rcprune.Instance"):
            rcprune.solve(bad)
        with pytest.raises(rcprune.InvalidInstanceError, match="expected a rcprune.Instance"):
            rcprune.evaluate(bad, None)
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown instance kind"):
        rcprune.method_names("tensor")
