"""Dropping unread rows: never adds, never raises spend, reaches a fixed point, and keeps every read channel."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from rcprune import NetworkSolution, evaluate_network
from rcprune.network.cleanup import drop_unread_rows, read_channels
from rcprune.network.floor import channel_floor
from rcprune.network.generate import random_network

from tests.network.test_measure import measured


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_dropping_unread_rows_only_removes_waste(seed):
    net = measured(seed, n_layers=5, residual=0.5) if seed % 2 else random_network(seed, n_layers=5, residual=0.5)
    if seed % 3 == 0:  # a channel floor: fixed channels count as read
        net = channel_floor(net.replace(budget=None, density=1.0), 0.4)
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
        fixed = net.fixed_rows(li.name)
        assert np.array_equal(clean[li.name].rows[fixed], sol[li.name].rows[fixed])  # fixed rows are read
        if not net.group(li.output).consumers:
            assert np.array_equal(clean[li.name].rows, sol[li.name].rows)
    assert drop_unread_rows(net, clean) == clean                            # a fixed point
    # what the consumers read is the same: the effective columns of layers that keep rows do not change
    eff_a, eff_b = sol.effective(net), clean.effective(net)
    for li in net.layers:
        if clean[li.name].rows.any():
            assert np.array_equal(eff_a[li.name].cols, eff_b[li.name].cols)


def test_a_cut_stem_is_found():
    from rcprune.network.builder import NetworkBuilder
    from rcprune.network.cleanup import input_reaches_outputs

    b = NetworkBuilder("res")
    x = b.input("x", 1)
    h = b.layer("stem", np.ones((2, 1)), x)
    h = b.add(h, b.layer("branch", np.ones((2, 2)), h))
    b.layer("fc", np.ones((1, 2)), h, protected=True)
    net = b.build(budget=7)
    full = NetworkSolution.full(net)
    assert input_reaches_outputs(net, full) == (True, [])
    no_branch = NetworkSolution({**dict(full.items()), "branch": ([0, 0], [1, 1])})
    assert input_reaches_outputs(net, no_branch)[0]            # the skip path carries the signal
    no_stem = NetworkSolution({**dict(full.items()), "stem": ([0, 0], [1])})
    ok, unreached = input_reaches_outputs(net, no_stem)
    assert not ok and "stem:out" in unreached and "fc:out" in unreached


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 100_000))
def test_reachability_matches_a_path_search(seed):
    import networkx as nx
    from rcprune.network.cleanup import input_reaches_outputs

    net = random_network(seed, n_layers=5, residual=0.5)
    rng = np.random.default_rng(seed)
    sol = NetworkSolution({li.name: (rng.random(li.rows) < 0.5, rng.random(li.cols) < 0.5) for li in net.layers})
    eff = sol.effective(net)
    g = nx.DiGraph()
    for li in net.layers:   # channel-level graph: input channel -> layer row -> output channel
        s = eff[li.name]
        cols = s.cols.reshape(li.in_channels, li.block).any(axis=1)
        for gname, off in li.inputs:
            for c in range(net.group(gname).size):
                if cols[off + c] and s.rows.any():
                    g.add_edge(("ch", gname, c), ("layer", li.name))
        for r in np.flatnonzero(s.rows):
            g.add_edge(("layer", li.name), ("ch", li.output, int(r)))
    ok, _ = input_reaches_outputs(net, sol)
    inputs = [("ch", gr.name, c) for gr in net.groups if gr.input for c in range(gr.size)]
    outputs = [gr for gr in net.groups if (gr.protected or not gr.consumers) and not gr.input]
    def reached(gr):
        return any(g.has_node(s) and g.has_node(("ch", gr.name, c)) and nx.has_path(g, s, ("ch", gr.name, c))
                   for s in inputs for c in range(gr.size))
    assert ok == all(reached(gr) for gr in outputs)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 100_000))
def test_the_flat_kernel_drops_what_the_reference_drops(seed):
    from rcprune.network.cleanup import always_read, drop_unread_flat, drop_unread_rows_reference

    net = measured(seed, n_layers=6, residual=0.5) if seed % 2 else random_network(seed, n_layers=6, residual=0.5)
    if seed % 3 == 0:
        net = channel_floor(net.replace(budget=None, density=1.0), 0.4)
    rng = np.random.default_rng(seed)
    p_row, p_col = rng.uniform(0.2, 0.9, 2)
    sol = NetworkSolution({li.name: (rng.random(li.rows) < p_row, rng.random(li.cols) < p_col) for li in net.layers})
    rows, cols = sol.to_flat(net)
    rows, cols = rows.copy(), cols.copy()
    before = int(rows.sum())
    dropped = drop_unread_flat(net.flat, always_read(net), rows, cols)
    assert NetworkSolution.from_flat(net, rows, cols) == drop_unread_rows_reference(net, sol) == drop_unread_rows(net, sol)
    assert dropped == before - int(rows.sum())
    assert np.array_equal(cols, sol.to_flat(net)[1])
