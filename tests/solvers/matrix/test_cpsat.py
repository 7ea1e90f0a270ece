"""CP-SAT integer program: agreement with the brute force, the scaling bound, export, time limit, options."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.linear_solver.python import model_builder
from ortools.sat.python import cp_model

import rcprune
from rcprune import library
from rcprune.solvers.matrix.cpsat import cpsat
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column
from tests.clock import simulated_clock
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances

budget_or_fixed_shape = st.one_of(instances(), instances(fixed_shape=True))
few = settings(max_examples=40)


def _optimum(scores, budget) -> float:
    return brute_force(scores, budget=budget.get("budget"), shape=budget.get("shape"))[0]


def _float_slack(inst) -> float:
    return 1e-9 * max(1.0, inst.total)


@given(budget_or_fixed_shape)
def test_cpsat_matches_brute_force(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    res = cpsat(inst)
    opt = _optimum(scores, budget)
    tol = res.info["scaling_tolerance"] + _float_slack(inst)
    assert res.feasible and res.status == "optimal"
    assert opt - _float_slack(inst) <= res.cost <= opt + tol
    assert res.lower_bound <= opt + _float_slack(inst)
    assert res.cost - res.lower_bound <= tol
    assert [t[2] for t in res.trace] == sorted((t[2] for t in res.trace), reverse=True)


@given(instances(integer=True), st.booleans())
def test_integer_scores_get_an_exact_proof(case, fixed):
    scores, budget = case
    if fixed:
        rows, cols = np.unravel_index(budget["budget"] - 1, scores.shape)
        budget = {"shape": (int(rows) + 1, int(cols) + 1)}
    inst = rcprune.Instance(scores, **budget)
    res = cpsat(inst)
    assert res.info["scale"] == 1.0 and res.info["scaling_tolerance"] == 0.0
    assert res.status == "optimal" and res.cost == res.lower_bound == _optimum(scores, budget)


@few
@given(instances(integer=False), st.sampled_from([2.0 ** -7, 0.25, 1.0]))
def test_coarse_scale_still_gives_a_valid_bound(case, scale):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    res = cpsat(inst, scale=scale)
    opt = _optimum(scores, budget)
    assert res.info["score_rounding"] <= 0.5 / scale
    assert res.lower_bound <= opt + _float_slack(inst)
    assert res.status == "optimal"  # by definition, within the (large) scaling tolerance
    assert res.cost <= opt + res.info["scaling_tolerance"] + _float_slack(inst)


@few
@given(instances(), st.data())
def test_per_shape_mode_solves_that_shape(case, data):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    r = data.draw(st.integers(1, min(inst.m, inst.budget)))
    c = data.draw(st.integers(1, min(inst.n, inst.budget // r)))
    res = cpsat(inst, shape=(r, c), hint=data.draw(st.booleans()))
    assert res.solution.shape == (r, c) and res.info["shape"] == (r, c)
    assert res.status == "optimal"
    opt = brute_force(scores, shape=(r, c))[0]
    assert res.cost == pytest.approx(opt, rel=1e-9, abs=res.info["scaling_tolerance"] + _float_slack(inst))
    assert rcprune.evaluate(inst, res.solution).feasible


def test_same_seed_same_answer():
    inst = rcprune.generate("laplace", 10, 12, density=0.3, seed=5)
    first, second = cpsat(inst, seed=3), cpsat(inst, seed=3)
    assert first.solution == second.solution
    assert first.iterations == second.iterations and first.lower_bound == second.lower_bound


def test_through_solve_dispatch_with_workers():
    inst = rcprune.generate("laplace", 9, 11, density=0.3, seed=2)
    res = rcprune.solve(inst, method="cpsat", workers=2)
    assert res.method == "cpsat" and res.status == "optimal" and res.info["workers"] == 2
    assert res.cost - res.lower_bound <= res.info["scaling_tolerance"] + _float_slack(inst)
    assert res.cost <= rcprune.solve(inst, method="top-rows").cost


@pytest.mark.parametrize("fixed", [False, True])
def test_export_writes_a_model_other_solvers_read(tmp_path, fixed):
    scores = np.array([[5.5, 1.0, 0.0], [1.0, 1.25, 0.0], [0.0, 0.0, 3.0]])
    budget = {"shape": (2, 2)} if fixed else {"budget": 2}
    inst = rcprune.Instance(scores, **budget)
    mps, lp = tmp_path / "model.mps", tmp_path / "sub" / "model.lp"
    res = cpsat(inst, export=mps)
    cpsat(inst, export=lp)
    assert res.info["export"] == str(mps)
    n_vars, n_rows = 9 + 3 + 3, 3 * 9 + 1 + (2 + 3 + 3 if fixed else 0)

    text = mps.read_text()
    assert "OBJSENSE" in text and "MAX" in text and "z_0_0" in text
    model = model_builder.Model()
    assert model.import_from_mps_file(str(mps))
    assert (model.num_variables, model.num_constraints) == (n_vars, n_rows)
    solver = model_builder.Solver("scip")
    if solver.solver_is_supported():
        assert solver.solve(model) == model_builder.SolveStatus.OPTIMAL
        assert inst.total - solver.objective_value == pytest.approx(_optimum(scores, budget))

    lines = lp.read_text().splitlines()
    assert "Maximize" in lines and "Subject to" in lines and "Binaries" in lines and lines[-1] == "End"
    assert "+5.5 z_0_0" in lines[lines.index("Maximize") + 1]
    constraints = lines[lines.index("Subject to") + 1:lines.index("Bounds")]
    assert len(constraints) == n_rows


@pytest.mark.parametrize("time_limit", [1e-3, 1.0])
def test_time_limit_returns_the_best_found_with_a_valid_bound(time_limit):
    inst = library.get("laplace-40x60")
    res = cpsat(inst, time_limit=time_limit)
    assert res.status == "time_limit" and res.feasible
    assert res.cost == rcprune.evaluate(inst, res.solution).cost <= res.info["warm_start_cost"]
    # the optimum lies between the library's proven bound and its best known cost
    assert 0.0 <= res.lower_bound <= min(res.cost, inst.metadata["best_known_cost"] + _float_slack(inst))
    assert res.cost >= inst.metadata["best_lower_bound"] - _float_slack(inst)


def _simulated_build(monkeypatch, build_seconds):
    """Simulated clock: building the CP-SAT model takes ``build_seconds``; CP-SAT, stopped at once,
    records the time limit it was given."""
    module = importlib.import_module("rcprune.solvers.matrix.cpsat")
    clock = simulated_clock(monkeypatch)
    build, solve, given = module._cpsat_model, cp_model.CpSolver.solve, []

    def slow_build(*args):
        clock.advance(build_seconds)
        return build(*args)

    def record_and_stop(self, model, callback=None):
        given.append(self.parameters.max_time_in_seconds)
        self.parameters.max_deterministic_time = 0.0
        return solve(self, model, callback)

    monkeypatch.setattr(module, "_cpsat_model", slow_build)
    monkeypatch.setattr(cp_model.CpSolver, "solve", record_and_stop)
    return given


def test_cpsat_gets_the_time_left_after_the_model_is_built(monkeypatch):
    given = _simulated_build(monkeypatch, build_seconds=1.0)
    inst = library.get("laplace-12x16")
    res = cpsat(inst, time_limit=2.5)
    assert given == [1.5] and res.runtime == 1.0
    assert res.status == "time_limit" and res.info["cpsat_status"] == "UNKNOWN"
    assert cpsat(inst).info["cpsat_status"] == "UNKNOWN" and given == [1.5, float("inf")]  # no limit: none set


def test_out_of_time_while_building_it_returns_the_warm_start(monkeypatch):
    given = _simulated_build(monkeypatch, build_seconds=3.0)
    inst = library.get("laplace-12x16")
    res, greedy = cpsat(inst, time_limit=2.5), greedy_row_column(inst)
    assert given == [] and res.info["cpsat_status"] == "NOT_STARTED" and res.status == "time_limit"
    assert res.solution == greedy.solution and res.cost == greedy.cost == res.info["warm_start_cost"]
    assert res.lower_bound == greedy.lower_bound and res.iterations == 0


@few
@given(budget_or_fixed_shape)
def test_stopped_at_once_it_returns_a_valid_bound(case):
    scores, budget = case
    inst = rcprune.Instance(scores, **budget)
    res = cpsat(inst, time_limit=1e-6)
    opt = _optimum(scores, budget)
    assert res.feasible and res.cost >= opt - _float_slack(inst)
    assert res.lower_bound <= opt + _float_slack(inst)
    if res.status == "optimal":
        assert res.cost <= opt + res.info["scaling_tolerance"] + _float_slack(inst)
    else:
        assert res.status == "time_limit"


def test_cpsat_stopped_without_a_solution_keeps_the_warm_start(monkeypatch):
    solve = cp_model.CpSolver.solve

    def stop_at_once(self, model, callback=None):
        self.parameters.max_deterministic_time = 0.0
        return solve(self, model, callback)

    monkeypatch.setattr(cp_model.CpSolver, "solve", stop_at_once)
    inst = library.get("laplace-12x16")
    res, greedy = cpsat(inst), greedy_row_column(inst)
    assert res.info["cpsat_status"] == "UNKNOWN" and res.info["best_bound_scaled"] is None
    assert res.status == "feasible"
    assert res.solution == greedy.solution and res.lower_bound == greedy.lower_bound


def test_progress_prints_the_search_log(capfd):
    cpsat(rcprune.Instance([[1, 2], [3, 4]], budget=2), progress=True)
    assert "CP-SAT" in capfd.readouterr().out


@pytest.mark.parametrize("options, message", [
    ({"workers": -1}, "workers"),
    ({"workers": 0}, "workers"),
    ({"workers": 1.5}, "workers"),
    ({"scale": -1.0}, "scale"),
    ({"scale": float("nan")}, "scale"),
    ({"scale": 2.0 ** 52}, "scale"),
    ({"scale": 3.0}, "power of two"),
    ({"export": "model.txt"}, "export"),
    ({"export": 3}, "export"),
    ({"shape": (0, 1)}, "shape"),
    ({"shape": (3, 1)}, "shape"),
    ({"shape": (2, 2)}, "budget"),
    ({"shape": (1,)}, "shape"),
])
def test_bad_options_are_rejected(tmp_path, options, message):
    inst = rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], budget=3)
    options = {"export": tmp_path / "model.mps", **options}
    with pytest.raises(rcprune.InvalidInstanceError, match=message):
        rcprune.solve(inst, method="cpsat", **options)
    assert not list(tmp_path.iterdir())  # nothing written before the options are checked


def test_shape_must_match_a_fixed_shape():
    inst = rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], shape=(1, 2))
    assert cpsat(inst, shape=(1, 2)).solution.shape == (1, 2)
    with pytest.raises(rcprune.InvalidInstanceError, match="fixed shape"):
        cpsat(inst, shape=(2, 1))
