"""The large-layer benchmark: ratios to SparseGPT measured in the same run, the searches never above their
start when it is SparseGPT's mask, and its CLI."""
import numpy as np
import pytest

import rcprune
from rcprune.bench.large_layer import bench_large_layer, synthetic_layer
from rcprune.cli import main


def test_rows_are_ratios_to_sparsegpt_and_searches_from_it_never_lose(monkeypatch):
    import rcprune.solvers.retention.compensated_start as start

    monkeypatch.setattr(start, "OBC_WORK", 0)       # this small layer treated as large: SparseGPT start
    rows = bench_large_layer(12, 40, sparsity=0.8, log=lambda msg: None,
                             methods=("sparsegpt", "compensated-tabu", "compensated-annealing"))
    by = {r["method"]: r for r in rows}
    assert list(by) == ["sparsegpt", "compensated-tabu", "compensated-annealing"]
    assert by["sparsegpt"]["vs_anchor"] == 1.0 and by["sparsegpt"]["time_vs_anchor"] == 1.0
    for r in rows:
        assert r["vs_anchor"] == pytest.approx(r["error"] / by["sparsegpt"]["error"])
        assert r["seconds"] > 0 and r["build_seconds"] > 0
    for method in ("compensated-tabu", "compensated-annealing"):
        assert by[method]["start"] == "sparsegpt" and by[method]["candidates"] == start.CANDIDATES
        assert by[method]["vs_anchor"] <= 1 + 1e-9
    w, h = synthetic_layer(12, 40)
    inst = rcprune.RetentionInstance(w, h, sparsity=0.8)
    assert by["sparsegpt"]["error"] == pytest.approx(rcprune.solve(inst, method="sparsegpt").cost)
    with pytest.raises(ValueError, match="anchor"):
        bench_large_layer(4, 8, methods=("compensated-tabu",))


def test_synthetic_layer_is_seeded_and_positive_definite():
    w, h = synthetic_layer(3, 10, seed=4)
    w2, h2 = synthetic_layer(3, 10, seed=4)
    assert np.array_equal(w, w2) and np.array_equal(h, h2)
    assert np.allclose(h, h.T) and np.linalg.eigvalsh(h)[0] > 0


def test_cli_quick(capsys):
    assert main(["bench", "large-layer", "--quick", "--m", "9", "--n", "9", "--methods", "sparsegpt,compensated-tabu"]) == 0
    out = capsys.readouterr().out
    assert "64 x 576" in out and "compensated-tabu" in out and "vs_anchor" in out
