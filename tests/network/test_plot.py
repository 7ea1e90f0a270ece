"""Allocation table and PNG plot (matplotlib optional)."""
from __future__ import annotations

import sys

import pytest

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution
from rcprune.network.generate import resnet_network
from rcprune.network.plot import allocation_table, format_allocation, plot_allocation


def _net():
    return resnet_network(18, seed=0, width=1 / 16, num_classes=10, sparsity=0.9)


def test_table_lists_every_layer_and_totals():
    net = _net()
    res = rcprune.solve(net, method="network-greedy")
    rows = allocation_table(net, {"greedy": res, "full": NetworkSolution.full(net)})
    assert [r["layer"] for r in rows] == list(net.layer_names) + ["total"]
    assert rows[-1]["greedy kept"] == str(res.kept_count)
    assert rows[-1]["greedy density"] == pytest.approx(res.kept_count / net.total_entries)
    assert all(r["full density"] == 1.0 for r in rows)
    le = res.evaluation.layers[3]
    assert rows[3]["greedy kept"] == f"{le.n_rows}x{le.n_cols}"
    text = format_allocation(net, res)
    assert "layer4.1.conv2" in text and "network-greedy density" in text
    with pytest.raises(InvalidInstanceError, match="expected a NetworkSolution"):
        allocation_table(net, {"x": 3})


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    net = _net()
    res = rcprune.solve(net, method="network-greedy")
    path = plot_allocation(net, {"greedy": res, "channels": NetworkSolution.full(net)}, tmp_path / "a" / "alloc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    net = _net()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_allocation(net, NetworkSolution.full(net), tmp_path / "x.png")
    assert allocation_table(net, NetworkSolution.full(net))  # the table needs no matplotlib
