"""Dropping unread rows: never adds, never raises spend, reaches a fixed point, and keeps every read channel."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from rcprune import NetworkSolution, evaluate_network
from rcprune.network.cleanup import drop_unread_rows, read_channels
from rcprune.network.generate import random_network

from tests.network.test_measure import measured


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_dropping_unread_rows_only_removes_waste(seed):
    net = measured(seed, n_layers=5, residual=0.5) if seed % 2 else random_network(seed, n_layers=5, residual=0.5)
    rng = np.random.default_rng(seed)
    sol = NetworkSolution({li.name: (rng.random(li.rows) < 0.6, rng.random(li.cols) < 0.5) for li in net.layers})
    clean = drop_unread_rows(net, sol)
    before, after = evaluate_network(net, sol), evaluate_network(net, clean)
    assert after.kept_count <= before.kept_count and after.spend <= before.spend + 1e-12
    read = read_channels(net, clean)
    for li in net.layers:
        assert not np.any(clean[li.name].rows & ~sol[li.name].rows)       # nothing added
        assert np.array_equal(clean[li.name].cols, sol[li.name].cols)
        assert not np.any(clean[li.name].rows & ~read[li.output])         # what stays is read
        if net.fixed_rows(li.name) or not net.group(li.output).consumers:
            assert np.array_equal(clean[li.name].rows, sol[li.name].rows)
    assert drop_unread_rows(net, clean) == clean                            # a fixed point
    # what the consumers read is the same: the effective columns of layers that keep rows do not change
    eff_a, eff_b = sol.effective(net), clean.effective(net)
    for li in net.layers:
        if clean[li.name].rows.any():
            assert np.array_equal(eff_a[li.name].cols, eff_b[li.name].cols)
