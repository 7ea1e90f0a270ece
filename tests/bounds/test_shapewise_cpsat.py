"""CP-SAT per shape inside the shape-wise bound: the bound as a cut, the incumbent as a cutoff.

Enumeration would solve these small matrices first, so the tests lower ``EXACT_MAX_SIDE`` to force the
CP-SAT paths: alone (m n <= CPSAT_MAX_ENTRIES) and after the Lagrangian bound (CPSAT_MAX_ENTRIES = 0).
"""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.bounds import shapewise
from rcprune.bounds.shapewise import shapewise_bound
from rcprune.solvers.matrix.cpsat import cpsat
from rcprune.solvers.matrix.exact_shapes import ExactShapes
from rcprune.validation import InvalidInstanceError
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances

few = settings(max_examples=40, deadline=None)


def _tol(total: float) -> float:
    return 1e-9 * max(1.0, total)


@few
@given(instances(max_m=6, max_n=6), st.booleans())
def test_shapewise_with_cpsat_is_below_the_optimum(case, after_lagrangian):
    scores, kw = case
    inst = rcprune.Instance(scores, **kw)
    opt = brute_force(scores, **kw)[0]
    with mock.patch.object(shapewise, "EXACT_MAX_SIDE", 0), \
            mock.patch.object(shapewise, "CPSAT_MAX_ENTRIES", 0 if after_lagrangian else 256):
        res = shapewise_bound(inst, ExactShapes.incumbent(inst), time_limit=5, exact=ExactShapes,
                              cpsat_max_entries=36)
    assert 0.0 <= res.bound <= opt + _tol(inst.total)
    assert res.info["incumbent"] >= opt - _tol(inst.total)
    for r, c, low in res.per_shape:
        assert low <= brute_force(scores, shape=(r, c))[0] + _tol(inst.total)
    for run in res.info["cpsat"]:
        assert run["after"] >= run["before"]


@few
@given(instances(max_m=6, max_n=6, fixed_shape=True), st.floats(-0.5, 0.5), st.floats(0.0, 1.0))
@example(case=(np.array([[6.24892506e-101]]), {"shape": (1, 1)}), offset=-0.5, slack=0.0)  # cutoff beyond int64
def test_cpsat_cut_and_cutoff_keep_the_bound_valid(case, offset, slack):
    scores, kw = case
    r, c = kw["shape"]
    opt = brute_force(scores, shape=(r, c))[0]
    scale = max(1.0, scores.sum())
    cutoff = opt + offset * scale / 10
    cut = opt - slack * scale / 10  # any valid lower bound on the shape's cost
    res = cpsat(rcprune.Instance(scores, shape=(r, c)), cutoff=cutoff, cost_bound=cut, time_limit=5)
    assert res.feasible and res.cost >= opt - _tol(scores.sum())
    assert res.lower_bound <= opt + _tol(scores.sum())
    if cutoff >= opt:  # the optimum is among the searched solutions
        assert res.status == "optimal"
    elif cutoff < opt - 1e-6 * scale:  # nothing costs <= cutoff: proven by infeasibility
        assert res.info["cutoff_infeasible"] and res.lower_bound >= cutoff - _tol(scores.sum())


def test_cpsat_closes_shapes_and_proves_the_optimum():
    rng = np.random.default_rng(3)
    inst = rcprune.Instance(rng.integers(0, 20, size=(12, 20)).astype(float), sparsity=0.85)
    opt = rcprune.solve(inst, method="enumeration").cost
    with mock.patch.object(shapewise, "EXACT_MAX_SIDE", 0):
        res = shapewise_bound(inst, opt, time_limit=30, exact=ExactShapes, cpsat_max_entries=240)
    assert res.bound == pytest.approx(opt, abs=1e-6)
    assert res.info["cpsat"] and all(run["closed"] for run in res.info["cpsat"])


def test_cpsat_option_errors():
    inst = rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], budget=2)
    with pytest.raises(InvalidInstanceError, match="cutoff"):
        cpsat(inst, cutoff="x")
    with pytest.raises(InvalidInstanceError, match="cpsat_max_entries"):
        shapewise_bound(inst, 10.0, cpsat_max_entries=-1)


def test_lower_bound_passes_cpsat_max_entries_to_shapewise():
    import rcprune
    from rcprune.certify import lower_bound

    rng = np.random.default_rng(1)
    inst = rcprune.Instance(np.abs(rng.laplace(size=(20, 30))), sparsity=0.9)
    opt = rcprune.solve(inst, method="enumeration")
    assert opt.status == "optimal"
    without = lower_bound(inst, "best", time_limit=15, incumbent=opt, cpsat_max_entries=0)
    with_cpsat = lower_bound(inst, "best", time_limit=15, incumbent=opt, cpsat_max_entries=600)
    assert without.bound <= with_cpsat.bound <= opt.cost + 1e-9 * opt.cost
    assert with_cpsat.gap(opt.cost) < 1e-6 < without.gap(opt.cost)
    with pytest.raises(rcprune.InvalidInstanceError, match="cpsat_max_entries"):
        lower_bound(inst, "best", cpsat_max_entries=-1)
