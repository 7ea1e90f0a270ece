"""The layer-wise benchmark on a tiny (untrained-epoch) digits ResNet cached in a tmp folder, and its CLI."""
import functools
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rcprune.cli import main  # noqa: E402
from rcprune.validation import kept_from_fraction  # noqa: E402


def test_rows_are_ratios_to_obc_measured_in_the_run(tmp_path, monkeypatch):
    import rcprune.bench.layerwise as lw
    from rcprune.bench.layerwise import bench_layerwise, summarize_layerwise
    from rcprune.bounds.perspective import perspective_bound

    def quick_bound(inst, time_limit):   # fewer proximal steps: a looser bound, still a bound
        res = perspective_bound(inst, iterations=30, steps=6)
        return res.bound, res.runtime

    monkeypatch.setattr(lw, "_lower_bound", quick_bound)
    rows = bench_layerwise(tmp_path, depth=8, width=4, train_epochs=0, sparsities=(0.5, 0.9), calibration=64,
                           log=lambda msg: None)
    layers = {r["layer"] for r in rows}
    small = {r["layer"] for r in rows if r["n"] <= 16}
    assert "conv1" in small and "fc" in layers and len(layers) > len(small)

    def enumerable(r):   # weights: C(n, k) <= 65,536 supports per row (n = 36 at 90%: 7,140); RC: n <= 16
        k = kept_from_fraction(r["n"], sparsity=r["sparsity"])
        return math.comb(r["n"], k) <= 65536 if r["problem"] == "weights" else r["n"] <= 16

    exact = {(r["layer"], r["sparsity"], r["problem"]) for r in rows if r["method"] == "exact"}
    longer = {(lay, s) for lay, s, p in exact if p == "weights" and lay not in small}
    assert longer and longer == {(r["layer"], 0.9) for r in rows if r["n"] == 36}   # longer rows at 90%: proven too
    assert len(rows) == len(layers) * 2 * (7 + 4 + 2) + len(exact)      # + bound, + exact where enumerable
    for r in rows:
        by = {x["method"]: x for x in rows if x["layer"] == r["layer"] and x["sparsity"] == r["sparsity"]
              and x["problem"] == r["problem"]}
        anchor = by[r["anchor"]]
        assert anchor["vs_anchor"] == 1.0 and r["anchor"] == ("obc" if r["problem"] == "weights" else "structured-obs")
        assert r["vs_anchor"] == pytest.approx(r["error"] / anchor["error"])
        if r["method"] in ("compensated-swap", "compensated-tabu", "compensated-annealing", "compensated-rc-swap",
                           "compensated-rc-tabu"):   # they start from it
            assert r["error"] <= anchor["error"] * (1 + 1e-9) + 1e-12
        assert 0 <= r["relative_error"] <= 1 + 1e-9
        tol = 1e-9 * (1 + anchor["error"])
        assert by["perspective-bound"]["error"] <= r["error"] + tol   # a proven bound is below every method
        if "exact" in by and r["method"] != "perspective-bound":
            assert by["exact"]["error"] <= r["error"] + tol
        assert ("exact" in by) == enumerable(r)
    lines = summarize_layerwise(rows)
    assert len(lines) == 2 * (7 + 2) + 2 * (4 + 2) and all("median" in line for line in lines)
    with pytest.raises(ValueError, match="anchor"):
        bench_layerwise(tmp_path, methods=("magnitude",), depth=8, width=4, train_epochs=0)


def test_cli(tmp_path, monkeypatch, capsys):
    import rcprune.bench.layerwise as lw

    monkeypatch.setattr(lw, "bench_layerwise", functools.partial(lw.bench_layerwise, depth=8, width=4,
                                                                 train_epochs=0, calibration=32))
    assert main(["bench", "layerwise", "--cache", str(tmp_path), "--sparsities", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "vs_anchor" in out and "weights 0.7, compensated-tabu: error / obc median" in out
    assert np.isfinite(float(out.split("compensated-rc-swap: error / structured-obs median ")[1].split()[0]))
