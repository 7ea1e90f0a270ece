"""Allocation + per-layer solves: budgets, curves, feasibility, channel pruning."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution
from rcprune.network.generate import random_network, resnet_network
from rcprune.solvers.network.allocation import allocate, layer_curve, network_allocation

from tests.matrix.bruteforce import brute_force
from tests.network.bruteforce import network_brute_force
from tests.network.cases import channel_pruning_case


def _curve_reference(s, budgets):
    """Best over r of the top-min(n, b // r) column sums restricted to the top-r rows by sum."""
    order = np.argsort(-s.sum(axis=1), kind="stable")
    out = []
    for b in budgets:
        best = 0.0
        for r in range(1, s.shape[0] + 1):
            cs = np.sort(s[order[:r]].sum(axis=0))[::-1]
            best = max(best, cs[:min(s.shape[1], b // r)].sum())
        out.append(best)
    return np.array(out)


@given(st.integers(0, 10_000))
def test_layer_curve_matches_reference_and_never_beats_the_optimum(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 10, size=(int(rng.integers(1, 5)), int(rng.integers(1, 6)))).astype(float)
    budgets = np.arange(0, s.size + 1)
    curve = layer_curve(s, budgets)
    np.testing.assert_allclose(curve, _curve_reference(s, budgets))
    for b in budgets[1:]:
        assert s.sum() - curve[b] >= brute_force(s, budget=int(b))[0] - 1e-9
    fixed = layer_curve(s, budgets, fixed_rows=True)
    np.testing.assert_allclose(fixed, [np.sort(s.sum(0))[::-1][:min(s.shape[1], b // s.shape[0])].sum() for b in budgets])


@given(st.integers(0, 10_000), st.sampled_from(["uniform", "proportional", "marginal"]))
def test_allocations_respect_bounds(seed, rule):
    net = random_network(seed, n_layers=4, scores="laplace", min_density=[0.0, 0.1][seed % 2])
    b = allocate(net, rule)
    assert b.sum() <= net.budget
    assert (b >= net.min_counts).all() and (b <= net.sizes).all()


def test_uniform_allocation_is_the_global_density():
    net = resnet_network(18, seed=1, width=1 / 8, num_classes=10, sparsity=0.9)
    b = allocate(net, "uniform")
    dens = b / net.sizes
    assert b.sum() <= net.budget and net.budget - b.sum() < net.n_layers
    assert np.allclose(dens[:-1], 0.1, atol=0.01)


@settings(max_examples=40)
@given(st.integers(0, 100_000), st.sampled_from(["uniform", "proportional", "marginal"]))
def test_allocation_feasible_and_not_below_optimum(seed, rule):
    net = random_network(seed, n_layers=3, max_channels=3, max_block=2, weighting=["none", "mean"][seed % 2])
    opt, _, _ = network_brute_force(net)
    res = rcprune.solve(net, method="network-allocation", allocation=rule, layer_method="greedy-row-column")
    assert res.feasible
    assert res.cost >= opt - 1e-9 * max(1.0, opt)
    assert res.kept_count <= net.budget


def test_allocation_finds_channel_pruning_when_it_is_optimal():
    net, keep = channel_pruning_case()
    res = network_allocation(net, layer_method="enumeration")
    assert res.cost == pytest.approx(0.0, abs=1e-12) and res.feasible
    assert res.solution.effective(net) == NetworkSolution.from_channels(net, keep).effective(net)


def test_allocation_with_local_annealing_on_a_resnet():
    net = resnet_network(18, seed=3, width=1 / 8, num_classes=10, sparsity=0.9)
    res = network_allocation(net, layer_options={"moves": 2000}, passes=1)
    assert res.feasible and res.info["layer_method"] == "annealing"
    assert len(res.info["budgets"]) == net.n_layers


def test_allocation_options():
    net = random_network(1)
    with pytest.raises(InvalidInstanceError, match="allocation must be one of"):
        network_allocation(net, allocation="equal")
    with pytest.raises(InvalidInstanceError, match="unknown method"):
        network_allocation(net, layer_method="nope")
