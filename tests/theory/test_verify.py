"""rcprune.theory.verify: its brute force agrees with the test oracle, its report is reproducible, and it would
catch a violation of the bounds proven in proofs/approximation.md (Theorems 6-10)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import rcprune
from rcprune.result import make_result
from rcprune.theory.verify import BoundReport, brute_force_costs, format_bounds, random_instances, verify_bounds
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances


@given(instances(6, 6))
def test_brute_force_matches_the_test_oracle(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    fixed = rcprune.Instance(scores, shape=(1 + budget["budget"] % inst.m, 1 + budget["budget"] % inst.n))
    got = brute_force_costs([inst, fixed, inst])
    assert got[0] == got[2] == pytest.approx(brute_force(scores, budget=budget["budget"])[0], rel=1e-9, abs=1e-9)
    assert got[1] == pytest.approx(brute_force(scores, shape=fixed.fixed_shape)[0], rel=1e-9, abs=1e-9)


def test_brute_force_on_many_mixed_sizes():
    """Grouping by size and chunking must not mix instances up."""
    insts = random_instances(300, seed=5, max_side=5)
    expected = [brute_force(i.scores, budget=None if i.fixed_shape else i.budget, shape=i.fixed_shape)[0]
                for i in insts]
    np.testing.assert_allclose(brute_force_costs(insts), expected, rtol=1e-9, atol=1e-9)


def test_report_is_within_the_proven_bounds_and_reproducible():
    """approximation.md, Theorems 6-10 on 600 random instances; the worst instance reproduces its ratio."""
    report = verify_bounds(n=600, seed=3, max_side=6)
    assert list(report) == ["greedy-independent", "greedy-row-column", "greedy-column-row"]
    for method, rep in report.items():
        assert isinstance(rep, BoundReport) and rep.method == method and rep.instances == 600
        assert 1.0 <= rep.mean_ratio <= rep.worst_ratio <= 2.0
        assert rep.violations == rep.bound_violations == rep.infeasible == 0
        inst = rep.worst_instance
        opt = brute_force(inst.scores, budget=None if inst.fixed_shape else inst.budget, shape=inst.fixed_shape)[0]
        assert rep.worst_optimum == pytest.approx(opt, rel=1e-9, abs=1e-9)
        assert rcprune.solve(inst, method=method).cost == rep.worst_cost
        d = rep.to_dict()
        assert d["worst_instance"]["name"] == inst.name and d["violations"] == 0
    again = verify_bounds(n=600, seed=3, max_side=6)
    assert {k: v.worst_ratio for k, v in again.items()} == {k: v.worst_ratio for k, v in report.items()}
    assert random_instances(4, seed=3)[3].name == random_instances(10, seed=3)[3].name
    assert random_instances(4, seed=3)[3] == random_instances(10, seed=3)[3]


def test_instances_cover_both_forms_and_all_score_kinds():
    insts = random_instances(400, seed=0, max_side=7, fixed_shape_fraction=0.25)
    assert {i.metadata["kind"] for i in insts} == {"integer", "binary", "uniform", "sparse", "heavy"}
    fixed = sum(i.fixed_shape is not None for i in insts)
    assert 50 < fixed < 150
    assert max(i.m for i in insts) == max(i.n for i in insts) == 7


def _worst_single_entry(instance):
    """Deliberately bad: keeps the smallest single entry (ratio unbounded) and claims it is optimal
    (lower bound = its cost, above OPT whenever it is not optimal)."""
    i, j = np.unravel_index(np.argmin(instance.scores), instance.scores.shape)
    sol = rcprune.Solution.from_indices(instance.m, instance.n, [i], [j])
    cost = rcprune.evaluate(instance, sol).cost
    return make_result(instance, sol, method="bad", runtime=0.0, lower_bound=cost)


def test_a_violation_is_reported():
    report = verify_bounds(n=200, seed=1, max_side=4, methods=["greedy-row-column", _worst_single_entry])
    bad = report["_worst_single_entry"]
    assert bad.violations > 0 and bad.worst_ratio > 2 and bad.bound_violations > 0
    assert report["greedy-row-column"].violations == report["greedy-row-column"].bound_violations == 0
    table = format_bounds(report)
    assert "VIOLATED" in table and "_worst_single_entry" in table
    assert "all checks passed" in format_bounds({"greedy-row-column": report["greedy-row-column"]})


def test_format_bounds_lists_every_method():
    report = verify_bounds(n=30, seed=0, max_side=3)
    lines = format_bounds(report).splitlines()
    assert lines[0].startswith("method") and len(lines) == 2 + len(report)
    for method in report:
        assert any(line.startswith(method) for line in lines[1:-1])


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must"), ({"max_side": 11}, "max_side must"), ({"max_side": 0}, "max_side must"),
    ({"seed": -1}, "seed must"), ({"methods": ["no-such-method"]}, "unknown method"),
    ({"methods": []}, "methods is empty"), ({"methods": [3]}, "methods must"),
    ({"fixed_shape_fraction": 1.5}, "fixed_shape_fraction"), ({"tolerance": -1.0}, "tolerance"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(rcprune.InvalidInstanceError, match=match):
        verify_bounds(**{"n": 5, **kwargs})


def test_brute_force_refuses_large_instances():
    with pytest.raises(rcprune.InvalidInstanceError, match="too large"):
        brute_force_costs([rcprune.Instance(np.ones((11, 10)), budget=3)])
    with pytest.raises(rcprune.InvalidInstanceError, match="Instance"):
        brute_force_costs([np.ones((2, 2))])
