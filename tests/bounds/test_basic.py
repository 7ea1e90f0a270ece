"""Cheap lower bounds (surrogate, top-k, spectral) and the entry point: never above the brute-force optimum."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import rcprune
from rcprune.bounds import BoundResult
from rcprune.certify import certify, lower_bound
from rcprune.bounds.spectral import spectral_norm_upper, spectral_table
from rcprune.bounds.topk import topk_table
from tests.checks import expected_gap
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances

CHEAP = ("surrogate", "topk", "spectral")


def _tol(total: float) -> float:
    return 1e-9 * max(1.0, total)


def _shape_optimum(scores: np.ndarray, r: int, c: int) -> float:
    """Max kept sum with exactly r rows and c columns (brute force)."""
    cost, _, _ = brute_force(scores, shape=(r, c))
    return scores.sum() - cost


@given(instances())
def test_cheap_bounds_below_optimum(case):
    scores, kw = case
    inst = rcprune.Instance(scores, **kw)
    opt, _, _ = brute_force(scores, **kw)
    for method in CHEAP:
        res = lower_bound(inst, method)
        assert isinstance(res, BoundResult) and res.method == method
        assert 0.0 <= res.bound <= opt + _tol(inst.total), (method, res.bound, opt)


@given(instances(max_m=6, max_n=6))
def test_per_shape_tables_bound_every_shape(case):
    scores, kw = case
    inst = rcprune.Instance(scores, **kw)
    for table in (topk_table(inst), spectral_table(inst)):
        for r, c, upper in zip(table.rows, table.cols, table.kept_upper):
            assert _shape_optimum(scores, int(r), int(c)) <= upper + _tol(inst.total)


def test_topk_dominates_surrogate_and_spectral_is_tight_on_additive_matrices():
    rng = np.random.default_rng(3)
    inst = rcprune.Instance(rng.exponential(size=(20, 30)), sparsity=0.9)
    assert lower_bound(inst, "topk").bound >= lower_bound(inst, "surrogate").bound - _tol(inst.total)
    # s_ij = a_i + b_j: E = 0, the spectral bound is the optimum of the additive problem
    additive = rng.random(12)[:, None] + rng.random(15)[None, :]
    inst = rcprune.Instance(additive, budget=40)
    opt = rcprune.solve(inst, method="enumeration").cost
    assert lower_bound(inst, "spectral").bound == pytest.approx(opt, rel=1e-6)


def test_spectral_norm_upper_is_above_svd():
    rng = np.random.default_rng(0)
    for shape in ((5, 9), (9, 5), (1, 4), (30, 30)):
        e = rng.normal(size=shape)
        assert np.linalg.norm(e, 2) <= spectral_norm_upper(e) <= np.linalg.norm(e, 2) * (1 + 1e-5)
    assert spectral_norm_upper(np.zeros((3, 4))) == 0.0


def test_entry_point_errors_and_proof_text():
    inst = rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], budget=2)
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown bound method"):
        lower_bound(inst, "magic")
    with pytest.raises(rcprune.InvalidInstanceError, match="expected a rcprune.Instance"):
        lower_bound([[1.0]], "topk")
    with pytest.raises(rcprune.InvalidInstanceError, match="incumbent"):
        lower_bound(inst, "topk", incumbent="cheap")
    res = lower_bound(inst, "topk")
    assert "top-k" in res.proof and res.per_shape and len(res.per_shape) == 2
    assert res.gap(10.0) == pytest.approx((10.0 - res.bound) / 10.0)


def test_certify_keeps_the_better_bound_and_proves_optimality():
    inst = rcprune.Instance([[4.0, 1.0], [0.0, 3.0]], budget=2)
    res = certify(rcprune.solve(inst, method="top-rows"), inst, method="topk")
    assert res.cost == 3.0 and res.lower_bound == pytest.approx(3.0) and res.status == "optimal" and res.gap < 1e-12
    assert res.info["bound"]["method"] == "topk"


@given(instances(max_m=5, max_n=5))
def test_solve_with_bound_reports_a_certified_gap(case):
    scores, kw = case
    inst = rcprune.Instance(scores, **kw)
    opt = brute_force(scores, **kw)[0]
    res = rcprune.solve(inst, method="greedy-row-column", bound=True)
    assert res.lower_bound <= opt + _tol(inst.total) <= res.cost + 2 * _tol(inst.total)
    assert res.gap == pytest.approx(expected_gap(res.cost, res.lower_bound), abs=1e-12)
    assert res.info["bound"]["method"] == "best"


def test_solve_bound_option_errors():
    inst = rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], budget=2)
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown bound method"):
        rcprune.solve(inst, bound="nope")
    assert rcprune.solve(inst, bound="topk").info["bound"]["method"] == "topk"


def test_cli_bound_prints_a_certified_gap(capsys, tmp_path):
    import json

    from rcprune.cli import main

    path = tmp_path / "i.npz"
    rcprune.save_instance(rcprune.Instance([[4.0, 1.0], [0.0, 3.0]], budget=2), path)
    assert main(["bound", str(path), "--json", "--time-limit", "2"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["cost"] == 3.0 and row["gap"] < 1e-9 and row["bound_method"] == "best"
    assert main(["bound", str(path), "--method", "topk"]) == 0
    assert "above optimal" in capsys.readouterr().out
