"""The network lower bound is below the exact network optimum (independent brute force)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.bounds.network import layer_bound_curve, network_lower_bound
from rcprune.network.generate import chain_network, random_network, residual_network
from tests.matrix.bruteforce import brute_force
from tests.checks import expected_gap
from tests.network.bruteforce import network_brute_force


@pytest.mark.parametrize("seed", range(12))
def test_network_bound_below_exact_optimum(seed):
    rng = np.random.default_rng(seed)
    make = (chain_network, residual_network, random_network)[seed % 3]
    net = make(seed, density=1.0)
    budget = int(rng.integers(max(1, int(net.min_counts.sum())), net.total_entries + 1))
    net = net.replace(budget=budget)
    opt = network_brute_force(net)[0]
    res = network_lower_bound(net)
    assert 0.0 <= res.bound <= opt + 1e-9 * max(1.0, net.weighted_total), (res.bound, opt)
    assert len(res.per_layer) == net.n_layers


@pytest.mark.parametrize("seed", range(6))
def test_layer_curve_below_single_layer_optimum(seed):
    rng = np.random.default_rng(seed)
    s = np.floor(rng.exponential(3.0, size=(rng.integers(1, 6), rng.integers(1, 6))))
    fixed = bool(seed % 2)
    budgets, bounds = layer_bound_curve(s, points=8, fixed_rows=fixed)
    assert np.all(np.diff(bounds) <= 0)
    for k, low in zip(budgets[1:], bounds[1:]):
        if fixed:
            opt = s.sum() - np.sort(s.sum(axis=0))[::-1][:min(s.shape[1], k // s.shape[0])].sum()
        else:
            opt = brute_force(s, budget=int(k))[0]
        assert low <= opt + 1e-9 * max(1.0, s.sum())


def test_network_bound_rejects_single_instances():
    with pytest.raises(rcprune.InvalidInstanceError, match="NetworkInstance"):
        network_lower_bound(rcprune.Instance([[1.0]], budget=1))


def test_gap_benchmark_rows_are_consistent():
    from rcprune.bench.bounds import gap_benchmark

    (row,) = gap_benchmark(names=("laplace-12x16",), sparsities=(0.9,), time_limit=1.0)
    assert 0.0 <= row["lower_bound"] <= row["cost"] and 0.0 <= row["gap"] <= row["topk_gap"] + 1e-12


@settings(deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_all_shape_tables_bound_every_exact_shape(m, n, seed, integer):
    """U[r, c] >= the best kept sum with exactly r rows and c columns, for every shape (brute force)."""
    from rcprune.bounds.network import shape_upper_table
    from tests.matrix.bruteforce import all_subsets

    rng = np.random.default_rng(seed)
    s = np.floor(rng.exponential(3.0, (m, n))) if integer else np.abs(rng.laplace(size=(m, n)))
    br, bc = all_subsets(m), all_subsets(n)
    kept = br @ s @ bc.T
    best = np.zeros((m + 1, n + 1))
    np.maximum.at(best, (br.sum(axis=1).astype(int)[:, None], bc.sum(axis=1).astype(int)[None, :]), kept)
    upper = shape_upper_table(s)
    assert np.all(upper >= best - 1e-9 * max(1.0, s.sum()))


@pytest.mark.parametrize("seed", range(8))
def test_all_shape_tables_match_the_per_budget_tables(seed):
    from rcprune.bounds.spectral import spectral_all_shapes, spectral_table
    from rcprune.bounds.topk import topk_all_shapes, topk_table
    from rcprune.matrix.model import maximal_shapes

    rng = np.random.default_rng(seed)
    m, n = (int(v) for v in rng.integers(1, 12, 2))
    s = np.abs(rng.laplace(size=(m, n)))
    inst = rcprune.Instance(s, budget=int(rng.integers(1, m * n + 1)))
    r, c = maximal_shapes(inst)
    np.testing.assert_allclose(topk_all_shapes(s)[r, c], topk_table(inst).kept_upper, rtol=1e-12)
    np.testing.assert_allclose(spectral_all_shapes(s)[r, c], spectral_table(inst).kept_upper, rtol=1e-12)


def test_fine_grid_tightens_the_network_bound():
    from rcprune.network.generate import resnet_network

    net = resnet_network(18, seed=1, width=1 / 16, sparsity=0.9)
    coarse, fine = network_lower_bound(net, points=32).bound, network_lower_bound(net).bound
    assert coarse <= fine
    cost = rcprune.solve(net, method="network-greedy").cost
    assert fine <= cost


@pytest.mark.parametrize("seed", range(6))
def test_solve_with_bound_certifies_network_results(seed):
    make = (chain_network, residual_network, random_network)[seed % 3]
    net = make(seed, density=0.5)
    opt = network_brute_force(net)[0]
    res = rcprune.solve(net, method="network-greedy", bound=True)
    tol = 1e-9 * max(1.0, net.weighted_total)
    assert 0.0 <= res.lower_bound <= opt + tol and opt <= res.cost + tol
    assert res.info["bound"]["bound"] == network_lower_bound(net).bound
    assert res.lower_bound == min(res.info["bound"]["bound"], res.cost)  # greedy has no bound of its own
    assert res.gap == pytest.approx(expected_gap(res.cost, res.lower_bound), abs=1e-12)
    assert res.info["bound"]["method"] == "network" and len(res.info["bound"]["per_layer"]) == net.n_layers
    if res.status == "optimal":
        assert res.cost <= opt + 1e-9 * max(1.0, opt)


def test_network_bound_option_is_validated():
    with pytest.raises(rcprune.InvalidInstanceError, match="bound=True"):
        rcprune.solve(chain_network(0, budget=20), method="network-greedy", bound="topk")


@pytest.mark.parametrize("name", ["resnet18-s90", "resnet50-s90"])
def test_greedy_is_certified_within_5_percent_of_optimal(name):
    """proofs/bounds.md B5b: no network solution is 5% below the greedy on the ResNet shapes at 90%."""
    net = rcprune.library.get_network(name)
    greedy = rcprune.solve(net, method="network-greedy")
    bound = network_lower_bound(net).bound
    assert bound <= greedy.cost
    assert bound >= 0.95 * greedy.cost, (bound, greedy.cost)
