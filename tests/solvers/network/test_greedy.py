"""Global row-then-column greedy: feasible, never below the optimum, finds channel pruning when best."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution, evaluate_network
from rcprune.network.generate import random_network, resnet_network
from rcprune.solvers.network.greedy import channel_order, network_greedy

from tests.network.bruteforce import network_brute_force
from tests.network.cases import channel_pruning_case


@settings(max_examples=60)
@given(st.integers(0, 100_000))
def test_greedy_feasible_and_not_below_optimum(seed):
    net = random_network(seed, n_layers=3, max_channels=3, max_block=2,
                         weighting=["none", "total", "mean"][seed % 3], min_density=[0.0, 0.1][seed % 2])
    opt, _, _ = network_brute_force(net)
    res = rcprune.solve(net, method="network-greedy")
    assert res.cost >= opt - 1e-9 * max(1.0, opt)
    footprint = sum(li.rows * -(-int(mc) // li.rows) for li, mc in zip(net.layers, net.min_counts))
    if net.budget >= footprint:  # the documented guarantee
        assert res.feasible, res.evaluation.violations
    assert res.status == "feasible" and res.lower_bound is None
    assert res.cost == pytest.approx(evaluate_network(net, res.solution).cost)


def test_greedy_finds_channel_pruning_when_it_is_optimal():
    net, keep = channel_pruning_case()
    res = network_greedy(net)
    assert res.cost == 0.0 and res.feasible
    assert res.solution.effective(net) == NetworkSolution.from_channels(net, keep).effective(net)


def test_channel_order_groups_and_protection():
    net = resnet_network(18, seed=0, width=1 / 16, num_classes=10)
    order, score = channel_order(net)
    f = net.flat
    assert np.all(np.diff(score) <= 0)
    assert not f.chan_input[order].any()
    fc_group = [g.name for g in net.groups].index("fc:out")
    assert not np.isin(order, np.arange(f.group_off[fc_group], f.group_off[fc_group + 1])).any()
    # one entry per channel: a residual channel's rows (several producers) are ranked together
    assert len(set(order.tolist())) == len(order)


def test_greedy_is_deterministic_and_respects_layer_budgets():
    net = resnet_network(18, seed=2, width=1 / 16, num_classes=10, sparsity=0.8)
    a, b = network_greedy(net), network_greedy(net, seed=5)
    assert a.solution == b.solution and a.cost == b.cost
    assert a.feasible and a.kept_count <= net.budget
    lb = {n: max(int(net.min_counts[i]), int(0.2 * net.sizes[i])) for i, n in enumerate(net.layer_names)}
    per_layer = net.replace(budget=None, layer_budgets=lb)
    res = network_greedy(per_layer)
    assert res.feasible
    for le in res.evaluation.layers:
        assert le.kept_count <= lb[le.name]


def test_bad_options():
    net = random_network(1)
    with pytest.raises(InvalidInstanceError, match="checkpoints must be an integer >= 2"):
        rcprune.solve(net, method="network-greedy", checkpoints=1)
    with pytest.raises(InvalidInstanceError, match="unknown option"):
        rcprune.solve(net, method="network-greedy", colour="red")
    with pytest.raises(InvalidInstanceError, match="unknown method 'greedy-row-column' for a network instance"):
        rcprune.solve(net, method="greedy-row-column")
    assert rcprune.solve(net).method == "network-greedy"  # the kind's default


def test_greedy_feasible_whenever_a_solution_exists_on_fixed_seeds():
    """Beyond the documented guarantee: with minimum densities too, on a fixed set of random networks."""
    for seed in range(60):
        net = random_network(seed, n_layers=3, max_channels=3, max_block=2, min_density=0.1)
        opt, _, _ = network_brute_force(net)
        if np.isfinite(opt):
            assert network_greedy(net).feasible, seed


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_compared_after_cleaning_it_keeps_no_unread_row_and_stays_feasible(seed):
    from rcprune.network.cleanup import drop_unread_rows
    from rcprune.solvers.network.greedy import refill_columns

    net = random_network(seed, n_layers=5, residual=0.5, min_density=[0.0, 0.1][seed % 2])
    plain, read = network_greedy(net), network_greedy(net, drop_unread=True)
    assert read.info["drop_unread"] and not plain.info["drop_unread"]
    dropped = drop_unread_rows(net, read.solution)
    # nothing left to drop, unless dropping it breaks a layer's minimum count
    assert dropped == read.solution or not evaluate_network(net, dropped).feasible
    assert refill_columns(net, read.solution) == read.solution                    # nor budget for a live column
    assert read.feasible or not plain.feasible
    assert read.cost == pytest.approx(evaluate_network(net, read.solution).cost)


def test_compared_after_cleaning_it_spends_what_the_plain_sweep_leaves():
    """A ResNet-50-shaped instance at 90% removed: the plain sweep's best t keeps rows whose consumers keep
    none of their columns; cleaned, it keeps 43% of the budget. Compared after cleaning: all of it, at a
    lower cost."""
    from rcprune.network.cleanup import drop_unread_rows
    from rcprune.solvers.network.greedy import refill_columns

    net = resnet_network(50, 0, width=0.125, weighting="none", sparsity=0.9)
    plain = network_greedy(net).solution
    plain = net.evaluate(drop_unread_rows(net, refill_columns(net, drop_unread_rows(net, plain))))
    read = network_greedy(net, drop_unread=True)
    assert plain.kept_count < 0.5 * net.budget
    assert read.kept_count >= 0.99 * net.budget and read.cost < 0.95 * plain.cost


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_column_sums_without_removed_rows_match_a_recount(seed):
    from rcprune.solvers.network.greedy import _add_row_sums, _remove_row_sums

    net = random_network(seed, n_layers=4, max_channels=4, residual=0.5)
    f = net.flat
    rng = np.random.default_rng(seed)
    before = rng.random(f.row_off[-1]) < rng.uniform(0.3, 1.0)
    after = before & (rng.random(before.shape[0]) < rng.uniform(0.0, 1.0))
    sums = np.zeros(f.col_off[-1])
    _add_row_sums(f, np.flatnonzero(before), sums, 1.0)
    n_rows = np.bincount(f.row_layer[after], minlength=f.m.shape[0]).astype(np.int64)
    _remove_row_sums(f, np.flatnonzero(before & ~after), after, n_rows, sums)
    want = np.zeros(f.col_off[-1])
    _add_row_sums(f, np.flatnonzero(after), want, 1.0)
    np.testing.assert_allclose(sums, want, atol=1e-9)
