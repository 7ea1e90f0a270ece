"""Channel granularity: a coarse solve refines to a whole-block solution with the same cost and spend."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution, evaluate_network
from rcprune.network.generate import random_network
from rcprune.network.granularity import coarsen, refine

from tests.network.test_measure import measured


def _random_solution(net, rng):
    return NetworkSolution({li.name: (rng.random(li.rows) < 0.7, rng.random(li.cols) < 0.7) for li in net.layers})


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000), st.booleans())
def test_refined_solutions_evaluate_like_their_coarse_ones(seed, with_table):
    net = measured(seed, n_layers=4, residual=0.5) if with_table else random_network(seed, n_layers=4, weighting="mean")
    net = net.replace(budget=None, density=1.0)  # any budget: feasibility is compared, not required
    coarse = coarsen(net, "channel")
    rng = np.random.default_rng(seed)
    sol = _random_solution(coarse, rng)
    fine = refine(net, sol, "channel")
    a, b = evaluate_network(coarse, sol), evaluate_network(net, fine)
    assert a.cost == pytest.approx(b.cost, rel=1e-9, abs=1e-9)
    assert a.spend == pytest.approx(b.spend, rel=1e-9, abs=1e-9)
    assert a.kept_count * 1 <= b.kept_count and a.feasible == b.feasible
    for li in net.layers:
        blocks = fine[li.name].cols.reshape(li.in_channels, li.block)
        assert np.all(blocks.all(axis=1) | ~blocks.any(axis=1))


def _channel_optimum(net):
    """Brute force over whole-block column masks (tiny networks)."""
    best = np.inf
    layers = net.layers
    options = []
    for li in layers:
        fixed = net.fixed_rows(li.name)
        rows = [np.array(r, bool) for r in itertools.product((0, 1), repeat=li.rows) if np.all(np.array(r)[fixed])]
        cols = [np.repeat(np.array(c, bool), li.block) for c in itertools.product((0, 1), repeat=li.in_channels)]
        options.append([(r, c) for r in rows for c in cols])
    for combo in itertools.product(*options):
        ev = evaluate_network(net, NetworkSolution({li.name: rc for li, rc in zip(layers, combo)}))
        if ev.feasible:
            best = min(best, ev.cost)
    return best


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 100_000))
def test_coarse_cpsat_is_the_channel_optimum(seed):
    net = random_network(seed, n_layers=2, max_channels=2, max_block=2)
    try:
        coarse = coarsen(net, "channel")
    except InvalidInstanceError as exc:  # the budget cannot pay for whole blocks
        assert "at channel granularity" in str(exc) and not np.isfinite(_channel_optimum(net))
        return
    res = rcprune.solve(coarse, method="network-cpsat")
    opt = _channel_optimum(net)
    if not np.isfinite(opt):
        return
    fine = refine(net, res.solution, "channel")
    assert res.status == "optimal" and evaluate_network(net, fine).cost == pytest.approx(opt, abs=1e-6)


def test_unknown_granularity_is_named():
    net = random_network(0)
    with pytest.raises(InvalidInstanceError, match="kernel-offset granularity is not built"):
        coarsen(net, "kernel-offset")
    with pytest.raises(InvalidInstanceError, match="granularity must be one of"):
        refine(net, NetworkSolution.full(net), "rows")
    assert coarsen(net, "column") is net
