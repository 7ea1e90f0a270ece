"""Exact CP-SAT on small networks: agrees with brute force; bounds every heuristic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution
from rcprune.network.generate import chain_network, random_network, resnet_network, residual_network
from rcprune.solvers.network.cpsat import network_cpsat

from tests.network.bruteforce import network_brute_force
from tests.network.cases import channel_pruning_case


@settings(max_examples=40)
@given(st.integers(0, 100_000))
def test_cpsat_agrees_with_brute_force_and_bounds_the_heuristics(seed):
    net = random_network(seed, n_layers=int(2 + seed % 3), max_channels=3, max_block=2, residual=0.5,
                         min_density=[0.0, 0.1][seed % 2])
    opt, _, _ = network_brute_force(net)
    res = rcprune.solve(net, method="network-cpsat", seed=seed)
    if not np.isfinite(opt):
        return
    assert res.status == "optimal" and res.feasible
    assert res.cost == pytest.approx(opt, abs=1e-9) and res.lower_bound == pytest.approx(opt, abs=1e-9)
    for method, kw in (("network-greedy", {}), ("network-annealing", {"moves": 2000}),
                       ("network-allocation", {"layer_method": "greedy-row-column"})):
        other = rcprune.solve(net, method=method, seed=seed, **kw)
        assert other.cost >= res.cost - 1e-9


def test_cpsat_on_hand_built_networks_with_weights():
    for net in (chain_network(budget=20, scores="laplace"), residual_network(budget=30, downsample=True),
                residual_network(budget=12, scores="laplace").replace(weighting="mean")):
        opt, _, _ = network_brute_force(net) if net.total_entries <= 40 else (None, None, None)
        res = network_cpsat(net)
        assert res.feasible and res.lower_bound <= res.cost + 1e-9
        if opt is not None:
            assert res.cost == pytest.approx(opt, rel=1e-9)
        sa = rcprune.solve(net, method="network-annealing", moves=5000)
        assert sa.cost >= res.lower_bound - 1e-9


def test_cpsat_finds_channel_pruning_when_it_is_optimal():
    net, keep = channel_pruning_case()
    res = network_cpsat(net, hint=False)
    assert res.status == "optimal" and res.cost == 0.0
    assert res.solution.effective(net) == NetworkSolution.from_channels(net, keep).effective(net)


def test_cpsat_refuses_large_networks():
    net = resnet_network(18, seed=0, width=1 / 16, num_classes=10)
    with pytest.raises(InvalidInstanceError, match="network-cpsat is for small networks"):
        network_cpsat(net)
