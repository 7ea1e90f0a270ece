"""Per-layer error curves (rcprune.torch.error_curves) and prune(allocation="curves"): each curve point is the
structured-OBS solver's cost at that count (an achievable error, never below the brute-force optimum), rows
protected keep every row, the BatchNorm gain weights the error, and the allocation holds the budget."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.torch import extract, prune
from rcprune.network.curve_allocation import allocate_by_curves
from rcprune.torch.error_curves import curve_of, error_curves, shape_grid
from rcprune.validation import InvalidInstanceError

from tests.torch.cases import calibrated_resnet, flop_timed_latency_table


def _instance(seed, m, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4 * n, n)) @ rng.normal(size=(n, n))
    return CompensatedInstance(rng.normal(size=(m, n)), x.T @ x / len(x), budget=m * n)


def _brute(inst, all_rows=False):
    """Per count k, the least error after the refit over every (R, C) with |R| |C| <= k (R = every row with
    all_rows)."""
    m, n = inst.shape
    best = np.full(m * n + 1, float(inst.energies.sum()))
    row_sets = [tuple(range(m))] if all_rows else \
        [r for size in range(1, m + 1) for r in itertools.combinations(range(m), size)]
    for cols in (c for size in range(1, n + 1) for c in itertools.combinations(range(n), size)):
        for rows in row_sets:
            rmask, cmask = np.zeros(m, bool), np.zeros(n, bool)
            rmask[list(rows)], cmask[list(cols)] = True, True
            cost = inst.evaluate(Solution(rmask, cmask)).cost
            best[len(rows) * len(cols):] = np.minimum(best[len(rows) * len(cols):], cost)
    return best


@settings(max_examples=10)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(1, 4))
def test_each_point_is_the_structured_obs_cost_and_never_below_the_optimum(seed, m, n):
    inst = _instance(seed, m, n)
    counts = np.arange(m * n + 1)
    curve = curve_of(inst, counts)
    assert curve[-1] == pytest.approx(0.0, abs=1e-9) and curve[0] == pytest.approx(inst.energies.sum())
    assert np.all(np.diff(curve) <= 1e-12)                       # more entries never cost more
    for k in counts[1:]:
        sobs = rcprune.solve(CompensatedInstance(inst.weights, inst.hessian, budget=int(k), damping=0),
                             method="structured-obs")
        assert curve[k] == pytest.approx(sobs.cost, rel=1e-9, abs=1e-9)
    assert np.all(curve >= _brute(inst) - 1e-9)
    again, kr, kc = curve_of(inst, counts, shapes=True)
    np.testing.assert_array_equal(again, curve)
    assert np.all(kr * kc <= counts) and np.all((kr == 0) == (kc == 0)) and np.all(kr <= m) and np.all(kc <= n)
    assert np.all(curve[kr == 0] == pytest.approx(inst.energies.sum()))   # nothing kept: everything lost
    gr, gc, ge = shape_grid(inst, 8)                              # shapes: achievable, never below the optimum
    brute = _brute(inst)
    assert np.all((1 <= gr) & (gr <= m) & (1 <= gc) & (gc <= n)) and np.all(ge >= brute[gr * gc] - 1e-9)
    assert np.all(ge >= curve[gr * gc] - 1e-9)                   # a count's curve point is its best shape
    rows = curve_of(inst, counts, all_rows=True)
    assert np.all(rows >= _brute(inst, all_rows=True) - 1e-9) and np.all(rows >= curve - 1e-9)
    assert rows[:m] == pytest.approx(np.full(m, inst.energies.sum()))   # below one full column: all pruned
    assert rows[m * n] == pytest.approx(0.0, abs=1e-9)


def test_curves_of_a_network_and_the_batchnorm_gain():
    model, x, _ = calibrated_resnet()
    ext = extract(model, x[:1], sparsity=0.0)
    curves = error_curves(model, ext, [x[:24], x[24:]], points=8)
    assert set(curves) == set(ext.layers)
    for name, (k, e) in curves.items():
        size = int(np.prod(ext.layers[name].weight_shape))
        even = np.round(np.linspace(0, size, 9)).astype(np.int64)
        assert np.all(np.isin(even, k)) and k[1] == 1 and np.all(np.diff(k) > 0)   # and log-spaced below size/8
        assert np.sum(k < size / 8) > 2
        assert e[-1] == pytest.approx(0.0, abs=1e-9 * max(e[0], 1)) and np.all(np.diff(e) <= 1e-9 * e[0])
    bn = model.layer1[0].bn1
    with torch.no_grad():
        bn.weight.mul_(2.0)
    doubled = error_curves(model, ext, [x[:24], x[24:]], points=8)
    k, e = curves["layer1.0.conv1"]
    assert doubled["layer1.0.conv1"][1] == pytest.approx(4 * e, rel=1e-6)
    assert doubled["conv1"][1] == pytest.approx(curves["conv1"][1], rel=1e-9)   # before that BatchNorm: unchanged


def test_prune_allocates_by_the_curves_within_the_budget():
    model, x, _ = calibrated_resnet()
    calib = [x[:24], x[24:]]
    masked, rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=calib, allocation="curves")
    alloc = rep.result.info["curve_allocation"]
    budget = rep.budget
    assert rep.kept_weights <= budget
    rounds = alloc["rounds"]
    assert rounds[0]["asked"] == budget and 1 <= len(rounds) <= 3
    assert all(b["asked"] == a["asked"] + budget - a["spent"] for a, b in zip(rounds, rounds[1:]))   # the shortfall on top
    best = max(r["spent"] for r in rounds)                        # the round kept, then the refill
    assert all(r["spent"] <= budget for r in rounds) and rep.kept_weights == best + alloc["refilled"]
    assert alloc["refilled"] >= 0
    asked = next(r["asked"] for r in rounds if r["spent"] == best)
    assert sum(alloc["layer_budgets"].values()) <= asked
    assert alloc["lower_bound"] <= alloc["error"] + 1e-9
    assert rep.result.feasible
    _, by_scores = prune(model, x[:1], sparsity=0.7, compact=False, calibration=calib, allocation="scores")
    assert "curve_allocation" not in by_scores.result.info
    small, default = prune(model, x[:1], sparsity=0.7, calibration=calib)   # the curves: the default here
    assert default.result.info["curve_allocation"] == alloc
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-4, atol=1e-5)


def test_the_curves_reach_a_budget_of_a_few_percent():
    # evenly spaced counts alone kept every layer at 1/points of itself at least: 98% was refused
    model, x, _ = calibrated_resnet()
    masked, rep = prune(model, x[:1], sparsity=0.98, compact=False, calibration=[x[:24], x[24:]])
    assert "curve_allocation" in rep.result.info and rep.result.feasible
    assert 0 < rep.kept_weights <= rep.budget
    with pytest.raises(InvalidInstanceError, match="below the least the curves allow"):
        allocate_by_curves({"a": (np.array([4, 8]), np.array([1.0, 0.0]))}, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(allocation="curves"), "needs calibration="),
    (dict(allocation="layers"), "allocation must be one of 'scores', 'curves', got 'layers'"),
])
def test_bad_allocation_is_named(kwargs, match):
    model, x, _ = calibrated_resnet()
    with pytest.raises(InvalidInstanceError, match=match):
        prune(model, x[:1], **kwargs)


def test_bad_curve_options_are_named():
    model, x, _ = calibrated_resnet()
    ext = extract(model, x[:1], sparsity=0.0)
    with pytest.raises(InvalidInstanceError, match="points"):
        error_curves(model, ext, [x], points=0)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidInstanceError, match="not finite"):
        error_curves(model, ext, [bad], points=4)


def test_curves_under_a_latency_budget_in_the_group_space():
    model, x, _ = calibrated_resnet()
    table = flop_timed_latency_table(model, x[:4])
    calib = [x[:24], x[24:]]
    _, rep = prune(model, x[:4], budget="latency", speedup=1.6, latency_table=table, granularity="group",
                   calibration=calib, allocation="curves", compact=False)
    alloc = rep.result.info["curve_allocation"]
    assert rep.result.feasible and rep.predicted_ms <= table.dense_ms / 1.6 * (1 + 1e-9)
    assert alloc["lower_bound"] <= alloc["error"] + 1e-9 and alloc["refilled"] >= -1e-9
    assert all(r["spent"] <= rep.budget * (1 + 1e-9) for r in alloc["rounds"])
    assert rep.result.method == "network-group"


def test_calibration_rounds_solve_by_the_curves_too():
    model, x, _ = calibrated_resnet()
    table = flop_timed_latency_table(model, x[:4])
    _, rep = prune(model, x[:4], budget="latency", speedup=1.6, latency_table=table, granularity="group",
                   calibration=[x[:24], x[24:]], allocation="curves", calibrate=2, compact=False)
    rounds = rep.result.info["calibration"]
    kept = next(r for r in rounds if r.get("kept"))
    alloc = rep.result.info["curve_allocation"]    # the allocation of the kept round's budget
    assert alloc["rounds"][0]["asked"] == pytest.approx(kept["budget_ms"] - table.measure(rep.extraction).fixed)
    assert rep.predicted_ms == pytest.approx(kept["predicted_ms"])


def test_latency_budgets_allocate_by_the_scores_unless_asked():
    model, x, _ = calibrated_resnet()
    table = flop_timed_latency_table(model, x[:4])
    _, rep = prune(model, x[:4], budget="latency", speedup=1.6, latency_table=table, granularity="group",
                   calibration=[x[:24], x[24:]], compact=False)
    assert "curve_allocation" not in rep.result.info
