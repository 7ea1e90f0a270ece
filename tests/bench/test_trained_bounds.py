"""Certified gaps on trained layers: a tiny untrained-epoch ResNet cached in a tmp folder, and the CLI."""
from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import torch.nn as nn  # noqa: E402

from rcprune.cli import main  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from tests.checks import expected_gap  # noqa: E402


def test_trained_bound_bench_rows_are_certified(tmp_path, monkeypatch, capsys):
    import rcprune.bench.trained_bounds as bb

    tiny = functools.partial(bb.bench_trained_bounds, depth=8, width=4, train_epochs=0, annealing_time=0.05,
                             bound_time=0.5)
    rows = tiny(tmp_path, log=lambda msg: None)
    layers = [n for n, m in cifar_resnet(8, 4, 1, 10).named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [r["layer"] for r in rows] == layers + layers
    assert [r["sparsity"] for r in rows] == [0.9] * len(layers) + [0.93] * len(layers)
    for r in rows:
        assert 0.0 <= r["lower_bound"] <= r["cost"] * (1 + 1e-9)
        assert r["gap"] == pytest.approx(expected_gap(r["cost"], r["lower_bound"]), abs=1e-12)
        assert r["best_known"] <= r["cost"] * (1 + 1e-9)
    assert len(bb.summarize_bounds(rows)) == 2
    assert rows[0]["cached"] is False and tiny(tmp_path, sparsities=(0.9,), log=lambda m: None)[0]["cached"]
    monkeypatch.setattr(bb, "bench_trained_bounds", tiny)
    assert main(["bench", "bounds", "--trained", "--quick", "--cache", str(tmp_path), "--sparsity", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "trained digits ResNet" in out and "sparsity 0.9: median certified gap" in out


def test_cpsat_per_shape_option_and_errors(tmp_path):
    from rcprune.bench.trained_bounds import bench_trained_bounds
    from rcprune.validation import InvalidInstanceError

    rows = bench_trained_bounds(tmp_path, depth=8, width=4, train_epochs=0, sparsities=(0.9,), annealing_time=0,
                                bound_time=0.5, cpsat_max_entries=300, log=lambda msg: None)
    assert all(r["lower_bound"] <= r["cost"] * (1 + 1e-9) for r in rows)
    with pytest.raises(InvalidInstanceError, match="sparsity"):
        bench_trained_bounds(tmp_path, depth=8, width=4, train_epochs=0, sparsities=(1.5,))
