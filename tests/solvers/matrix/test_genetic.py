"""Genetic search: feasible, never below the brute-force optimum nor above its start, repaired genomes
feasible with optimal columns, deterministic, time limit kept."""
import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import rcprune
from rcprune.matrix import kernels
from rcprune import library
from rcprune.solvers.matrix import genetic as ga
from tests.clock import simulated_clock
from tests.matrix.bruteforce import brute_force
from tests.matrix.strategies import instances
from tests.solvers.matrix.test_annealing import row_enumeration_optimum


def make(scores, kw) -> rcprune.Instance:
    return rcprune.Instance(scores, **kw)


def optimum(inst: rcprune.Instance) -> float:
    return brute_force(inst.scores, budget=inst.budget, shape=inst.fixed_shape)[0]


@given(st.one_of(instances(), instances(fixed_shape=True)), st.integers(0, 3),
       st.sampled_from(["greedy", "random"]), st.sampled_from(["uniform", "one-point"]))
@example((np.zeros((2, 3)), {"budget": 1}), 0, "greedy", "uniform")
@example((np.ones((1, 1)), {"shape": (1, 1)}), 0, "random", "one-point")
def test_feasible_between_optimum_and_start(case, seed, start, crossover):
    inst = make(*case)
    res = ga.genetic_search(inst, seed=seed, population=6, generations=8, start=start, crossover=crossover,
                            elite=seed % 2)
    ev = rcprune.evaluate(inst, res.solution)
    assert ev.feasible and res.cost == ev.cost
    assert res.cost >= optimum(inst) - 1e-9
    if start == "greedy":
        assert res.cost <= res.info["start_cost"] + 1e-9
    if inst.fixed_shape is not None:
        assert res.solution.shape == inst.fixed_shape
    costs = [c for _, _, c in res.trace]
    assert costs == sorted(costs, reverse=True) and costs[-1] == pytest.approx(res.cost)


@given(st.one_of(instances(), instances(fixed_shape=True)), st.integers(0, 10**6))
def test_repair_gives_feasible_genomes_with_optimal_columns(case, seed):
    inst = make(*case)
    rng = np.random.default_rng(seed)
    rows = rng.random((5, inst.m)) < rng.random()
    cols = rng.random((5, inst.n)) < rng.random()
    fitness = np.empty(5)
    fixed_rows, fixed_cols = inst.fixed_shape or (0, 0)
    ga._repair_and_score(inst.scores, inst.budget, fixed_rows, fixed_cols, inst.row_sums, rows, cols, fitness)
    for p in range(5):
        solution = rcprune.Solution(rows[p], cols[p])
        assert rcprune.evaluate(inst, solution).feasible
        assert fitness[p] == pytest.approx(kernels.kept_sum_reference(inst.scores, rows[p], cols[p]))
        best_for_rows = kernels.top_k_sum_reference(inst.scores[rows[p]].sum(axis=0), int(cols[p].sum()))
        assert fitness[p] == pytest.approx(best_for_rows, rel=1e-12, abs=1e-9)
        if inst.fixed_shape is None:
            r, c = solution.shape
            assert (r + 1) * c > inst.budget or r == inst.m  # no room for another row


def test_same_seed_same_answer():
    inst = library.get("laplace-40x60")
    a, b = (ga.genetic_search(inst, seed=4, generations=30) for _ in range(2))
    assert a.solution == b.solution and a.trace[-1][1:] == b.trace[-1][1:]
    c = ga.genetic_search(inst, seed=4, generations=30, crossover="one-point")
    assert rcprune.evaluate(inst, c.solution).feasible


@pytest.mark.parametrize("name", ["laplace-12x16", "uniform-12x16", "gaussian-12x16"])
def test_reaches_the_proven_optimum_on_small_library_instances(name):
    inst = library.get(name)
    best = row_enumeration_optimum(inst)
    assert best - 1e-9 <= ga.genetic_search(inst, seed=0).cost <= best * 1.005


def test_a_tiny_time_limit_stops_before_the_first_generation():
    inst = library.get("laplace-40x60")
    res = ga.genetic_search(inst, time_limit=1e-9, generations=10**6)
    assert res.status == "time_limit" and res.iterations == 0 and res.info["evaluations"] == res.info["population"]
    assert res.feasible and res.cost == rcprune.evaluate(inst, res.solution).cost
    assert res.cost <= res.info["start_cost"] + 1e-9


@pytest.mark.parametrize("seed", [0, 3])
def test_time_limit_stops_after_the_generations_that_fit(monkeypatch, seed):
    """Simulated clock: scoring a population takes 1 s, so a 10.5 s limit leaves time for the initial
    population and generations 1-10; the clock read before generation 11 says 11 s and stops the search,
    whose answer is then that of an untimed 10-generation run with the same seed."""
    inst = library.get("laplace-40x60")
    untimed = ga.genetic_search(inst, seed=seed, generations=10)
    clock = simulated_clock(monkeypatch)
    score = ga._repair_and_score

    def scored_in_one_second(*args):
        score(*args)
        clock.advance(1.0)

    monkeypatch.setattr(ga, "_repair_and_score", scored_in_one_second)
    res = ga.genetic_search(inst, seed=seed, time_limit=10.5, generations=10**6)
    assert res.status == "time_limit" and res.iterations == 10 and res.runtime == 11.0
    assert res.info["evaluations"] == untimed.info["evaluations"] == 64 + 10 * (64 - 2)  # defaults: population 64, elite 2
    assert res.solution == untimed.solution and res.cost == untimed.cost == rcprune.evaluate(inst, res.solution).cost
    assert res.trace[1:] and [t[1:] for t in res.trace] == [t[1:] for t in untimed.trace]
    assert res.cost <= res.info["start_cost"] + 1e-9


def test_through_solve():
    inst = library.get("planted-30x40")
    res = rcprune.solve(inst, method="genetic", seed=2, population=10, generations=5)
    assert res.method == "genetic" and res.iterations == 5 and res.info["evaluations"] == 10 + 5 * 8
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown option"):
        rcprune.solve(inst, method="genetic", pop=10)


@pytest.mark.parametrize("options, message", [
    ({"population": 1}, "population"), ({"generations": 0}, "generations"), ({"elite": 4}, "elite"),
    ({"elite": -1}, "elite"), ({"tournament": 0}, "tournament"), ({"tournament": 5}, "tournament"),
    ({"mutation": 0.0}, "mutation"), ({"mutation": 1.5}, "mutation"), ({"crossover": "two-point"}, "crossover"),
    ({"start": "best"}, "start"), ({"progress": "yes"}, "progress"),
    ({"start": rcprune.Solution([True, True], [True, True, True])}, "infeasible"),
])
def test_bad_options(options, message):
    inst = rcprune.Instance(np.ones((2, 3)), budget=4)
    with pytest.raises(rcprune.InvalidInstanceError, match=message):
        ga.genetic_search(inst, **{"population": 4, **options})
