"""``rcprune demo --quick``: the whole pipeline end to end on a tiny ResNet, files written."""
import copy
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rcprune.cli import main  # noqa: E402
from tests.checks import accuracy  # noqa: E402


def test_demo_quick_writes_table_and_plots(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    methods = {r["method"] for r in rows}
    assert {"dense", "rc-greedy", "magnitude-unstructured", "magnitude-per-row", "retention",
            "retention+refit"} <= methods
    dense = next(r for r in rows if r["method"] == "dense")
    # the cached dense model, reloaded here, has the accuracy the demo reports on the same test split
    from rcprune.torch.data import digits_loaders
    from rcprune.torch.models import cifar_resnet

    test = digits_loaders(8, seed=0)[1]
    n_test = len(test.dataset)
    model = cifar_resnet(8, 8, 1, 10, seed=0)
    model.load_state_dict(torch.load(tmp_path / "dense-d8-w8-s8-e1-seed0.pt", weights_only=True))
    assert dense["acc_finetuned"] == dense["acc_zero_shot"] == result["dense"]["accuracy"] == accuracy(model, test)
    assert dense["kept_weights"] == sum(m.weight.numel() for m in model.modules()
                                        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    for r in rows:
        if r["method"] != "dense" and "kept_weights" in r:
            # retention rows keep round(0.1 n) weights per row: a little over 10% on short rows
            share = 0.12 if "per-row budget" in r.get("note", "") else 0.1
            assert r["kept_weights"] <= share * dense["kept_weights"] + 1, r["method"]
            # an accuracy on the test split is a count of hits over its size
            assert r["acc_finetuned"] * n_test == pytest.approx(round(r["acc_finetuned"] * n_test), abs=1e-9)
    retained = next(r for r in rows if r["method"] == "retention")
    assert retained["layer_error"] <= retained["layer_error_magnitude"]
    greedy = next(r for r in rows if r["method"] == "rc-greedy")
    assert greedy["macs"] > 0 and greedy["latency_ms"] > 0   # measured on this machine: no value to compare
    assert greedy["speedup"] == pytest.approx(dense["latency_ms"] / greedy["latency_ms"], rel=1e-12)
    split = greedy["latency_split_ms"]
    assert split["conv/gemm"] > 0 and split["total"] >= max(split[c] for c in split if c != "total")
    assert "Where the time goes" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.md").read_text().count("| 0.9 |") >= 2
    assert any(p.name.startswith("dense-") for p in tmp_path.iterdir())   # cached weights, loaded next time
    assert (tmp_path / "pareto" / "pareto.md").is_file() and "## Goals" in (tmp_path / "pareto" / "pareto.md").read_text()
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress", "--no-retention", "--no-pareto"]) == 0
    assert "loaded the trained dense model" in capsys.readouterr().out


def test_demo_rejects_bad_sparsity(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--sparsity", "1.5"]) == 2
    assert "sparsities must be in (0, 1)" in capsys.readouterr().err


def test_demo_rejects_bad_weighting(tmp_path):
    from rcprune.bench.demo import run_demo
    from rcprune.validation import InvalidInstanceError

    with pytest.raises(InvalidInstanceError, match="weighting must be one of"):
        run_demo(tmp_path, quick=True, weighting="max", progress=False, log=lambda *_: None)


@pytest.mark.parametrize("refit_before_finetune", [False, True])
def test_prune_rc_fine_tunes_from_trained_weights_unless_asked(refit_before_finetune):
    import rcprune
    from rcprune.torch import apply, extract, ls_refit
    from rcprune.torch.data import digits_loaders
    from rcprune.bench.demo import prune_rc
    from rcprune.torch.models import cifar_resnet
    from rcprune.torch.rcmask import keep_mask

    train, test = digits_loaders(8, seed=0)
    calib = [b for _, b in zip(range(2), train)]
    dense = cifar_resnet(8, 4, 1, 10, seed=0).eval()
    ext = extract(dense, calib[0][0][:1], sparsity=0.8, weighting="none")
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    model, refit, acc_masked, acc0 = prune_rc(dense, sol, ext, calib, test, refit_before_finetune)
    assert any(r["refit"] for r in refit.layers)   # the refit changed some layer (on its copy or here)
    mods, dmods = dict(model.named_modules()), dict(dense.named_modules())
    same = all(torch.equal(mods[n].weight, dmods[n].weight.masked_fill(~keep_mask(mods[n]), 0)) for n in ext.layers)
    # either way the stored originals are the dense weights
    assert all(torch.equal(mods[n].parametrizations.weight.original, dmods[n].weight) for n in ext.layers)
    assert same is not refit_before_finetune
    masked = apply(copy.deepcopy(dense), sol, ext)
    assert acc_masked == accuracy(masked, test)
    ls_refit(masked, sol, calib, extraction=ext)
    assert acc0 == accuracy(masked, test)
    assert accuracy(model, test) == (acc0 if refit_before_finetune else acc_masked)
