"""The network benchmark and its CLI entry (tiny time limits; no timing assertions)."""
from __future__ import annotations


from rcprune import evaluate_network

from rcprune import library
from rcprune.cli import main
from rcprune.bench.network import BENCH_COLUMNS, BOUND_COLUMNS, bench_network, channel_pruning_baseline
from rcprune.network.generate import resnet_network


def test_bench_rows_and_relations():
    rows = bench_network(models=("resnet18",), sparsities=(0.9,), time_limit=0.5)
    methods = [r["method"] for r in rows]
    assert methods == ["channel-pruning", "network-greedy", "network-allocation", "network-annealing"]
    by = {r["method"]: r for r in rows}
    assert by["network-greedy"]["vs_greedy"] == 0.0
    assert by["network-annealing"]["vs_greedy"] <= 0.0
    assert all(r["feasible"] for r in rows) and all(set(BENCH_COLUMNS) <= set(r) for r in rows)
    assert 0 < by["network-greedy"]["rel_cost"] < 1


def test_channel_pruning_baseline_is_maximal():
    net = resnet_network(18, seed=1, width=1 / 8, num_classes=10, sparsity=0.9)
    sol, info = channel_pruning_baseline(net)
    ev = evaluate_network(net, sol)
    assert ev.feasible and 0 < info["kept_channels"] < info["rankable_channels"]
    for le in ev.layers:  # only whole channels are removed
        assert le.n_cols + le.forced_cols == net.layer(le.name).cols


def test_library_hooks():
    assert "resnet50-s90" in library.network_names()
    assert library.get_network("chain3").name == "chain3"


def test_cli_bench_network(capsys):
    assert main(["bench", "network", "--models", "resnet18", "--sparsities", "0.93", "--time-limit", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "network-annealing" in out and "channel-pruning" in out


def test_bench_bound_columns_are_certified(capsys):
    plain = bench_network(models=("resnet18",), sparsities=(0.93,), time_limit=0.3)
    assert not any("gap" in r for r in plain)
    rows = bench_network(models=("resnet18",), sparsities=(0.93,), time_limit=0.3, bound=True)
    assert all(set(BENCH_COLUMNS + BOUND_COLUMNS) <= set(r) for r in rows)
    assert len({r["lower_bound"] for r in rows}) == 1 and len({r["bound_runtime"] for r in rows}) == 1
    for r in rows:
        assert 0.0 <= r["lower_bound"] <= r["cost"] * (1 + 1e-9)
        assert 0.0 <= r["gap"] <= 1.0
        assert abs(r["gap"] - (r["cost"] - r["lower_bound"]) / r["cost"]) < 1e-9
    assert main(["bench", "network", "--models", "resnet18", "--sparsities", "0.93", "--time-limit", "0.3",
                 "--bound"]) == 0
    out = capsys.readouterr().out
    assert "lower_bound" in out and "gap" in out and "bound_runtime" in out
