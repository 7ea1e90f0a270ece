"""Neighbouring annealing: feasible, never worse than its start, never below the optimum, seeded."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution
from rcprune.network.generate import random_network, resnet_network
from rcprune.solvers.network.annealing import network_annealing

from tests.network.bruteforce import network_brute_force
from tests.network.cases import channel_pruning_case


@settings(max_examples=40)
@given(st.integers(0, 100_000))
def test_annealing_feasible_between_optimum_and_greedy(seed):
    net = random_network(seed, n_layers=3, max_channels=3, max_block=2, residual=0.5,
                         weighting=["none", "total", "mean"][seed % 3])
    opt, _, _ = network_brute_force(net)
    greedy = rcprune.solve(net, method="network-greedy")
    res = rcprune.solve(net, method="network-annealing", seed=seed, moves=3000)
    assert res.info["start_cost"] == pytest.approx(greedy.cost)
    assert res.cost <= greedy.cost + 1e-9 * max(1.0, greedy.cost)
    assert res.cost >= opt - 1e-9 * max(1.0, opt)
    assert res.feasible == greedy.feasible
    assert res.status == "feasible" and res.lower_bound is None


def test_annealing_reaches_the_optimum_on_small_networks():
    hits = 0
    for seed in range(8):
        net = random_network(seed, n_layers=3, max_channels=3, max_block=2)
        opt, _, _ = network_brute_force(net)
        res = network_annealing(net, seed=seed, moves=20_000)
        hits += res.cost <= opt + 1e-9 * max(1.0, opt)
    assert hits >= 6


def test_annealing_finds_channel_pruning_when_it_is_optimal():
    net, keep = channel_pruning_case()
    worse = NetworkSolution.from_channels(net, {"a:out": [True, False, True, False], "b:out": [False, True, False]})
    res = network_annealing(net, moves=20_000, start=worse, seed=3)
    assert res.cost == pytest.approx(0.0, abs=1e-12) and res.feasible
    assert res.solution.effective(net) == NetworkSolution.from_channels(net, keep).effective(net)


def test_annealing_is_seeded_and_improves_a_resnet():
    net = resnet_network(18, seed=4, width=1 / 8, num_classes=10, sparsity=0.9)
    a = network_annealing(net, seed=7, moves=60_000)
    b = network_annealing(net, seed=7, moves=60_000)
    c = network_annealing(net, seed=8, moves=60_000)
    assert a.solution == b.solution and a.cost == b.cost
    assert a.feasible and a.kept_count <= net.budget
    assert a.cost < a.info["start_cost"] and c.cost < c.info["start_cost"]
    assert a.info["accepted"] == b.info["accepted"] and a.info["accepted"] != c.info["accepted"]
    assert a.iterations == a.info["moves"] == 60_000 and 0 < sum(a.info["accepted"].values()) <= 60_000
    assert a.trace[0][2] == a.info["start_cost"] and a.trace[-1][2] == pytest.approx(a.cost)


def test_annealing_time_limit_and_per_layer_budgets():
    net = resnet_network(18, seed=5, width=1 / 8, num_classes=10, sparsity=0.8)
    res = rcprune.solve(net, method="network-annealing", time_limit=0.5)
    assert res.status == "time_limit" and res.feasible
    lb = {n: max(int(net.min_counts[i]), int(0.25 * net.sizes[i])) for i, n in enumerate(net.layer_names)}
    per_layer = net.replace(budget=None, layer_budgets=lb, min_density=0.02)
    res = network_annealing(per_layer, moves=30_000)
    assert res.feasible
    assert all(le.kept_count <= lb[le.name] for le in res.evaluation.layers)


def test_annealing_options():
    net = random_network(2)
    with pytest.raises(InvalidInstanceError, match="mix must be 5 non-negative numbers"):
        network_annealing(net, mix=(1, 0))
    with pytest.raises(InvalidInstanceError, match="start must be 'greedy'"):
        network_annealing(net, start="random")
    with pytest.raises(InvalidInstanceError, match="t_end .* must not exceed t0"):
        network_annealing(net, t0=1.0, t_end=2.0, moves=10)
    with pytest.raises(InvalidInstanceError, match="moves must be an integer >= 1"):
        network_annealing(net, moves=0)
    only_channels = network_annealing(net, mix=(0, 0, 0, 0, 1), moves=500)
    assert set(k for k, v in only_channels.info["accepted"].items() if v) <= {"channel"}
