"""network-uniform: one share for every channel group, the largest that fits (checked against every share
by enumeration), in the group space; fill only spends what is left and never raises the cost."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, evaluate_network
from rcprune.network.generate import random_network, resnet_network
from rcprune.network.group_space import GroupSpace

from tests.network.test_group import _instance, group_sets


def _state(space, share):
    return np.clip(np.floor(share * space.sizes + 0.5 + 1e-9).astype(np.int64), space.lower, space.sizes)


def _fits(space, n):
    return space.spend(n) <= space.limit and all(space.count(l, n) <= space.max_counts[l]
                                                 for l in range(len(space.out)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(["weights", "floor", "table"]))
def test_the_largest_uniform_share_that_fits(seed, kind):
    net = _instance(seed, kind)
    res = rcprune.solve(net, method="network-uniform")
    space = GroupSpace(net)
    sizes = res.info["group_sizes"]
    assert {g: int(s.sum()) for g, s in group_sets(net, res.solution).items()} == sizes
    n = np.array([sizes[name] for name in space.names])
    np.testing.assert_array_equal(n, _state(space, res.info["share"]))
    ev = evaluate_network(net, res.solution)
    assert res.info["space_cost"] == pytest.approx(ev.cost, rel=1e-9, abs=1e-9)
    # every share on a fine grid: those with more channels than the answer do not fit
    for share in np.linspace(0, 1, 401):
        m = _state(space, share)
        if _fits(space, m) and (m >= n).all():
            np.testing.assert_array_equal(m, n)
    if _fits(space, n) and space.counts_ok(n):
        assert res.feasible


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(["weights", "table"]))
def test_fill_spends_what_is_left_and_never_costs_more(seed, kind):
    net = _instance(seed, kind)
    plain = rcprune.solve(net, method="network-uniform")
    filled = rcprune.solve(net, method="network-uniform", fill=True)
    if plain.feasible:
        assert filled.feasible and filled.cost <= plain.cost + 1e-9
        assert filled.evaluation.spend <= GroupSpace(net).limit + 1e-9
        assert filled.info["added"] >= 0 and filled.info["share"] == plain.info["share"]


def test_a_resnet_keeps_one_share_everywhere():
    net = resnet_network(18, seed=0, width=1 / 4, num_classes=10, sparsity=0.8)
    res = rcprune.solve(net, method="network-uniform")
    space = GroupSpace(net)
    share = res.info["share"]
    assert res.feasible and 0.3 < share < 0.6       # about sqrt(0.2) of every group's channels
    for g, size in zip(space.names, space.sizes):
        if not (net.group(g).input or net.group(g).protected):
            assert abs(res.info["group_sizes"][g] - share * size) <= 0.5 + 1e-9


def test_bad_fill_is_named():
    with pytest.raises(InvalidInstanceError, match="fill"):
        rcprune.solve(random_network(0), method="network-uniform", fill="yes")
