"""The channel floor: fixed channels chosen by score, held by every solver, the bound and the files."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution
from rcprune.network.floor import channel_floor, channel_scores, fix_channels
from rcprune.network.generate import random_network
from rcprune.network.io import load_network, save_network
from rcprune.solvers.network.allocation import layer_curve

from tests.network.bruteforce import measured_brute_force, network_brute_force
from tests.network.test_measure import definition_spend, measured

HEURISTICS = ("network-greedy", "network-allocation", "network-annealing")


def floored(seed: int, share: float | None = None, net=None):
    """A random small network with a random channel floor, its budget raised to the floor's minimum."""
    rng = np.random.default_rng(seed)
    net = net if net is not None else random_network(seed, n_layers=3, max_channels=3, max_block=2)
    share = float(rng.choice([0.2, 0.34, 0.5, 0.67])) if share is None else share
    probe = channel_floor(net.replace(budget=None, density=1.0) if net.measure.is_count
                          else net.replace(density=1.0), share)
    if net.measure.is_count:
        return channel_floor(net.replace(budget=max(net.budget, int(probe.min_counts.sum()))), share)
    return channel_floor(net.replace(budget=max(net.budget, float(probe.min_spend.sum()) * (1 + 1e-9))), share)


def scores_by_definition(net) -> dict[str, np.ndarray]:
    """Each channel's score from the module docstring, channel by channel."""
    out = {}
    for g in net.groups:
        v = np.zeros(g.size)
        for c in range(g.size):
            for l, li in enumerate(net.layers):
                s = net.scores[li.name] * net.weights[l]
                if li.output == g.name:
                    v[c] += s[c].mean()
                for src, off in li.inputs:
                    if src == g.name:
                        v[c] += s[:, (off + c) * li.block:(off + c + 1) * li.block].mean()
        out[g.name] = v
    return out


@pytest.mark.parametrize("seed", range(6))
def test_channel_scores_match_the_definition(seed):
    net = random_network(seed, n_layers=4, max_channels=4, max_block=3)
    got, want = channel_scores(net), scores_by_definition(net)
    for g in net.groups:
        np.testing.assert_allclose(got[g.name], want[g.name], rtol=1e-12)


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5, 1.0])
def test_the_floor_fixes_the_top_channels_of_every_prunable_group(share):
    net = random_network(5, n_layers=4, max_channels=5, max_block=2, density=1.0)
    fl = channel_floor(net, share)
    if share == 0:
        assert fl is net
    scores = channel_scores(net)
    for g in fl.groups:
        if g.input:
            assert g.floor == ()
            continue
        k = math.ceil(share * g.size - 1e-9)
        assert len(g.floor) == k and g.fixed == (tuple(range(g.size)) if g.protected else g.floor)
        worst_kept = min(scores[g.name][list(g.floor)], default=np.inf)
        best_free = max(np.delete(scores[g.name], list(g.floor)), default=-np.inf)
        assert worst_kept >= best_free
    for li in fl.layers:   # the core (fixed rows x fixed columns) is the minimum count
        cols = np.zeros(li.in_channels, bool)
        for g, off in li.inputs:
            cols[[off + c for c in fl.group(g).floor]] = True
        np.testing.assert_array_equal(fl.fixed_cols(li.name), np.repeat(cols, li.block))
        rows, ncols = len(fl.group(li.output).fixed), int(cols.sum()) * li.block
        core = max(rows, 1) * max(ncols, 1) if rows or ncols else 0
        assert fl.min_counts[fl.layer_names.index(li.name)] == core


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000))
def test_methods_keep_the_floor_and_cpsat_meets_brute_force(seed):
    net = floored(seed)
    opt, rows, _ = network_brute_force(net)
    for li in net.layers:      # the brute force's optimum itself keeps the fixed rows
        assert rows[li.name][net.fixed_rows(li.name)].all()
    res = rcprune.solve(net, method="network-cpsat")
    assert res.status == "optimal" and res.cost == pytest.approx(opt, abs=1e-6)
    for method in HEURISTICS:
        r = rcprune.solve(net, method=method, seed=seed, **({"moves": 3000} if method == "network-annealing" else {}))
        assert r.feasible, (method, r.evaluation.violations)
        assert r.cost >= opt - 1e-9
        eff = r.solution.effective(net)
        for li in net.layers:   # the floor's channels stay alive, and every consumer reads them
            assert r.solution[li.name].rows[net.fixed_rows(li.name)].all(), (method, li.name)
            assert eff[li.name].cols[net.fixed_cols(li.name)].all(), (method, li.name)
    bound = rcprune.solve(net, method="network-greedy", bound=True).lower_bound
    assert bound <= opt + 1e-9


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 100_000))
def test_the_floor_holds_under_a_table_measure(seed):
    net = floored(seed, net=measured(seed, n_layers=3, max_channels=3, max_block=2))
    opt = measured_brute_force(net, definition_spend(net.measure))
    for method in HEURISTICS:
        r = rcprune.solve(net, method=method, seed=seed, **({"moves": 3000} if method == "network-annealing" else {}))
        assert r.feasible and r.cost >= opt - 1e-9, (method, r.evaluation.violations)
    assert rcprune.solve(net, method="network-greedy", bound=True).lower_bound <= opt + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_least_spend_respects_fixed_rows_and_columns(seed):
    net = measured(seed, n_layers=2, max_channels=3, max_block=3)
    spend = definition_spend(net.measure)
    for li in net.layers:
        for min_rows, min_cols in [(a, b) for a in range(li.rows + 1) for b in range(0, li.cols + 1, 2)]:
            counts = np.arange(li.size + 1)
            got = net.measure.least_spend(li.name, li.rows, li.cols, counts, min_rows=min_rows, min_cols=min_cols)
            pinned = min_rows or min_cols
            for k, g in zip(counts, got):
                shapes = [(r, c) for r in range(li.rows + 1) for c in range(li.cols + 1)
                          if r * c >= k and r >= min_rows and c >= min_cols and (not pinned or r * c >= 1)]
                want = min((spend(li.name, r, c) for r, c in shapes), default=math.inf)
                assert g == pytest.approx(want, rel=1e-9, abs=1e-12), (li.name, min_rows, min_cols, k)


@pytest.mark.parametrize("seed", range(5))
def test_layer_curve_with_fixed_rows_is_the_fixed_first_greedy(seed):
    rng = np.random.default_rng(seed)
    s = rng.random((5, 4))
    fixed = rng.random(5) < 0.4
    budgets = np.arange(int(fixed.sum()), s.size + 1)
    got = layer_curve(s, budgets, fixed)
    order = np.lexsort((-s.sum(axis=1), ~fixed))
    for b, g in zip(budgets, got):
        want = max((np.sort(s[order[:r]].sum(axis=0))[::-1][:min(4, b // r)].sum()
                    for r in range(max(int(fixed.sum()), 1), 6)), default=0.0)
        assert g == pytest.approx(want)


def test_a_pruned_fixed_row_is_a_violation_and_from_channels_refuses_it():
    net = fix_channels(random_network(1, n_layers=3, max_channels=3, density=1.0), {})
    g = next(g for g in net.groups if not g.input and not g.protected)
    net = fix_channels(net, {g.name: [0]})
    masks = {li.name: (np.ones(li.rows, bool), np.ones(li.cols, bool)) for li in net.layers}
    masks[g.producers[0]][0][0] = False
    assert any("fixed row(s) pruned" in v for v in net.evaluate(NetworkSolution(masks)).violations)
    with pytest.raises(InvalidInstanceError, match="fixed channels"):
        NetworkSolution.from_channels(net, {g.name: np.arange(1, g.size)})


def test_the_floor_round_trips_through_files(tmp_path):
    net = floored(7)
    back = load_network(save_network(net, tmp_path / "floor.npz"))
    assert back == net and [g.floor for g in back.groups] == [g.floor for g in net.groups]
    g = next(g.name for g in net.groups if not g.input)   # numpy indices and tuples are normalized
    tweaked = fix_channels(net.replace(budget=None, density=1.0), {g: np.array([0], np.int64)})
    again = load_network(save_network(tweaked, tmp_path / "tweaked.npz"))
    assert again == tweaked and 0 in again.group(g).floor


def test_bad_floors_are_named():
    net = random_network(2, n_layers=3, max_channels=3, density=0.3)
    x = next(g.name for g in net.groups if g.input)
    h = next(g.name for g in net.groups if not g.input)
    with pytest.raises(InvalidInstanceError, match="network input"):
        fix_channels(net, {x: [0]})
    with pytest.raises(InvalidInstanceError, match="must be in"):
        fix_channels(net, {h: [99]})
    with pytest.raises(InvalidInstanceError, match="integer indices"):
        fix_channels(net, {h: [True, False]})
    with pytest.raises(InvalidInstanceError, match="min_channels"):
        channel_floor(net, 1.5)
    tight = net.replace(budget=1)
    with pytest.raises(InvalidInstanceError, match="channel floor of 1 of every group does not fit"):
        channel_floor(tight, 1.0)
    g = net.graph.copy()
    g.nodes[h]["floor"] = [0, 0]
    with pytest.raises(InvalidInstanceError, match="twice"):
        net.replace(graph=g, density=1.0)
    for bad in ("0", np.array([True]), [0.5]):
        g.nodes[h]["floor"] = bad
        with pytest.raises(InvalidInstanceError, match="list of channel indices"):
            net.replace(graph=g, density=1.0)
    g.nodes[h]["floor"] = np.array([0])   # a numpy array is read, not dropped for its truth value
    assert net.replace(graph=g, density=1.0).group(h).floor == (0,)
