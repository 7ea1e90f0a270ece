"""``rcprune demo --quick``: the whole pipeline end to end on a tiny ResNet, files written."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rcprune.cli import main  # noqa: E402


def test_demo_quick_writes_table_and_plots(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    methods = {r["method"] for r in rows}
    assert {"dense", "rc-greedy", "magnitude-unstructured"} <= methods
    dense = next(r for r in rows if r["method"] == "dense")
    for r in rows:
        if r["method"] != "dense" and "kept_weights" in r:
            assert r["kept_weights"] <= 0.1 * dense["kept_weights"] + 1, r["method"]
            assert 0 <= r["acc_finetuned"] <= 1
    greedy = next(r for r in rows if r["method"] == "rc-greedy")
    assert greedy["macs"] > 0 and greedy["latency_ms"] > 0
    assert (tmp_path / "results.md").read_text().count("| 0.9 |") >= 2
    assert any(p.name.startswith("dense-") for p in tmp_path.iterdir())   # cached weights, loaded next time
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "loaded the trained dense model" in capsys.readouterr().out


def test_demo_rejects_bad_sparsity(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--sparsity", "1.5"]) == 2
    assert "sparsities must be in (0, 1)" in capsys.readouterr().err
