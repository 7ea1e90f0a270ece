"""The group space and its ratio greedy: solutions lie in Torch-Pruning's space, evaluate as reported,
never beat the brute-force optimum of that space, and meet it on networks with one prunable group."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, evaluate_network
from rcprune.network.floor import fix_channels
from rcprune.network.generate import chain_network, random_network
from rcprune.network.granularity import check_method, coarsen, least_spend, refine
from rcprune.network.group_space import GroupSpace

from tests.network.bruteforce import group_brute_force
from tests.network.test_floor import floored
from tests.network.test_measure import definition_spend, measured, random_measure


def group_sets(net, solution) -> dict[str, np.ndarray]:
    """Per group, the one channel set every producer keeps and every consumer reads whole (through
    effective columns: a dead channel is read by no one); fails the test unless the solution lies in the
    group space."""
    sets = {}
    eff = solution.effective(net)
    for g in net.groups:
        seen = [solution[p].rows for p in g.producers]
        for layer, off in g.consumers:
            li = net.layer(layer)
            blocks = eff[layer].cols.reshape(li.in_channels, li.block)[off:off + g.size]
            assert np.all(blocks.all(axis=1) | ~blocks.any(axis=1)), (g.name, layer)
            seen.append(blocks.all(axis=1))
        for s in seen[1:]:
            np.testing.assert_array_equal(s, seen[0], err_msg=g.name)
        sets[g.name] = seen[0]
        if g.input or g.protected:
            assert sets[g.name].all(), g.name
        assert sets[g.name][list(g.floor)].all(), g.name
    return sets


def _instance(seed: int, kind: str):
    if kind == "table":
        return measured(seed, n_layers=4, max_channels=3, max_block=2)
    net = random_network(seed, n_layers=4, max_channels=3, max_block=2)
    return floored(seed, net=net) if kind == "floor" else net


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(["weights", "floor", "table"]))
def test_solutions_lie_in_the_group_space_and_never_beat_its_optimum(seed, kind):
    net = _instance(seed, kind)
    res = rcprune.solve(net, method="network-group")
    sets = group_sets(net, res.solution)
    assert {g: int(s.sum()) for g, s in sets.items()} == res.info["group_sizes"]
    ev = evaluate_network(net, res.solution)
    assert res.info["space_cost"] == pytest.approx(ev.cost, rel=1e-9, abs=1e-9)
    assert res.info["space_spend"] == pytest.approx(ev.spend, rel=1e-9, abs=1e-9)
    assert res.feasible == ev.feasible
    opt, _ = group_brute_force(net, definition_spend(net.measure) if kind == "table" else None)
    if res.feasible:
        assert res.cost >= opt - 1e-9
    if kind != "table":
        # kept entries: every layer reads one group, so every minimum count asks for one channel of a
        # given group, the smallest state is unique and shrinking towards it is never blocked
        assert res.feasible == np.isfinite(opt)


def _one_group(seed: int, with_table: bool, floor: bool):
    """A chain x -> conv1 -> conv2 (protected): conv1's output is the only group the solver sizes."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 6))
    net = chain_network(seed, channels=(2, c, 2), kernel=(int(rng.integers(1, 3)), 1), scores="laplace",
                        density=1.0)
    if with_table:
        net = net.replace(measure=random_measure(net, rng), density=1.0)
    if floor:
        net = fix_channels(net, {"conv1:out": [int(rng.integers(c))]})
    share = float(rng.uniform(0.05, 1.0))
    least = least_spend(net, "group")
    return net.replace(budget=least + share * (float(net.full_spend.sum()) - least)) if with_table else \
        net.replace(budget=max(int(np.ceil(least + share * (net.total_entries - least))), 1))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000), st.booleans(), st.booleans())
def test_one_prunable_group_is_solved_exactly(seed, with_table, floor):
    net = _one_group(seed, with_table, floor)
    res = rcprune.solve(net, method="network-group")
    opt, _ = group_brute_force(net, definition_spend(net.measure) if with_table else None)
    assert res.feasible and np.isfinite(opt)
    assert res.cost == pytest.approx(opt, rel=1e-9, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 100_000), st.booleans())
def test_a_coarse_solve_refines_with_the_same_cost_spend_and_count(seed, with_table):
    net = measured(seed, n_layers=4, max_block=3, residual=0.5) if with_table else \
        random_network(seed, n_layers=4, max_block=3, weighting="mean")
    try:
        coarse = coarsen(net, "group")
    except InvalidInstanceError:   # the budget cannot pay for whole blocks
        return
    res = rcprune.solve(coarse, method="network-group")
    fine = refine(net, res.solution, "group")
    ev = evaluate_network(net, fine)
    sizes = res.info["group_sizes"]
    assert {g: int(s.sum()) for g, s in group_sets(net, fine).items()} == sizes
    assert ev.cost == pytest.approx(res.info["space_cost"], rel=1e-9, abs=1e-9)
    assert ev.spend == pytest.approx(res.info["space_spend"], rel=1e-9, abs=1e-9)
    assert ev.feasible == res.feasible
    assert ev.kept_count == sum(sizes[li.output] * li.block * sum(sizes[g] for g, _ in li.inputs)
                                for li in net.layers)


@pytest.mark.parametrize("seed", range(6))
def test_the_least_group_spend_is_the_floor_spend(seed):
    net = floored(seed, share=0.5, net=measured(seed, n_layers=3, max_channels=3, max_block=2))
    space = GroupSpace(coarsen(net.replace(density=1.0), "group"))
    assert np.array_equal(space.least_sizes(), space.lower)
    spend = definition_spend(net.measure)
    by_definition = 0.0
    for li in net.layers:
        size = {g.name: (g.size if g.input or g.protected else len(g.floor)) for g in net.groups}
        by_definition += spend(li.name, size[li.output], li.block * sum(size[g] for g, _ in li.inputs))
    assert least_spend(net, "group") == pytest.approx(by_definition, rel=1e-9)
    assert least_spend(net, "group") >= least_spend(net, "channel") - 1e-9


def test_group_rankings_put_the_floor_first_then_importance():
    net = fix_channels(chain_network(3, channels=(2, 4, 2), scores="laplace", density=1.0), {"conv1:out": [2]})
    order = GroupSpace(net).rankings["conv1:out"]
    importance = net.scores["conv1"].sum(axis=1) + net.scores["conv2"].reshape(2, 4, 2).sum(axis=(0, 2))
    rest = [c for c in np.argsort(-importance, kind="stable") if c != 2]
    assert order.tolist() == [2, *rest]


def test_the_group_space_is_searched_by_network_group_only():
    assert check_method("group", None) == "network-group" and check_method("channel", None) == "network-greedy"
    assert check_method("column", "network-group") == "network-group"
    with pytest.raises(InvalidInstanceError, match="searched by network-group, network-uniform only"):
        check_method("group", "network-annealing")
    with pytest.raises(InvalidInstanceError, match="granularity must be one of column, channel, group"):
        check_method("kernel", None)
    with pytest.raises(InvalidInstanceError, match="unknown option"):
        rcprune.solve(random_network(0), method="network-group", moves=10)
    with pytest.raises(InvalidInstanceError, match="swaps"):
        rcprune.solve(random_network(0), method="network-group", swaps=-1)
