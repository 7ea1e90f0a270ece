"""``rcprune bench zeroshot --quick``: zero-shot and fine-tuned rows end to end on digits; goals; arguments."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("torch_pruning")

from rcprune.bench.zeroshot import FINETUNE_ROWS, ZERO_SHOT_ROWS, evaluate_goals, run_zeroshot  # noqa: E402
from rcprune.cli import main  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("zeroshot")
    assert main(["bench", "zeroshot", "--quick", "--out", str(out), "--sparsities", "0.5,0.9",
                 "--finetune-sparsities", "0.9"]) == 0
    return out, json.loads((out / "zeroshot.json").read_text())


def test_quick_writes_every_row(quick):
    out, result = quick
    assert {"zeroshot.json", "zeroshot.md"} <= {p.name for p in out.iterdir()}
    keys = {(r["method"], r["sparsity"]) for r in result["rows"]}
    assert keys == {(m, s) for m in ZERO_SHOT_ROWS for s in (0.5, 0.9)}
    budget = {s: next(r["kept_weights"] for r in result["rows"] if r["method"] == "magnitude-rc" and r["sparsity"] == s)
              for s in (0.5, 0.9)}
    for r in result["rows"]:
        assert 0 <= r["acc_zero_shot"] <= 1 and r["kept_weights"] <= budget[r["sparsity"]] + 1
        assert ("acc" in r) == (r["sparsity"] == 0.9 and r["method"] in FINETUNE_ROWS)
        if r["method"] == "data-aware-rc":
            assert r["error"] <= r["error_masked"] * 1.5 and r["norm_ratio"] > 0
        if r["method"] in ("data-aware-rc", "refit-only"):   # the curves allocate by default
            assert r["curve_lower_bound"] <= r["curve_error"] + 1e-9
        if r["method"] == "retention-curves":   # the uniform split is one of the curves' choices
            assert r["curve_lower_bound"] - 1e-9 <= r["curve_error"]
            assert r["uniform_curve_error"] is None or r["curve_error"] <= r["uniform_curve_error"] + 1e-9
        if r["method"] in ("retention-curves-masks", "magnitude-global"):   # at retention-curves' kept weights
            curves = next(c for c in result["rows"] if c["method"] == "retention-curves" and c["sparsity"] == r["sparsity"])
            assert r["kept_weights"] == curves["kept_weights"]
    md = (out / "zeroshot.md").read_text()
    assert "| data-aware-rc | 0.9 |" in md and "## Goals" in md


def test_retention_masks_on_the_original_weights():
    import copy

    from rcprune.torch.models import cifar_resnet
    from rcprune.torch.rcmask import keep_mask
    from rcprune.torch.pipeline import masks_on_original
    from rcprune.torch.retention import retention_prune

    torch.manual_seed(0)
    dense = cifar_resnet(depth=8, width=4, in_channels=1).eval()
    x = [torch.randn(16, 1, 8, 8)]
    refit = copy.deepcopy(dense)
    retention_prune(refit, x, 0.7, method="obc", refit=True)
    plain = copy.deepcopy(refit)
    masks_on_original(plain, x)
    modules, originals = dict(refit.named_modules()), dict(dense.named_modules())
    convs = [n for n, m in plain.named_modules() if keep_mask(m) is not None]
    assert convs
    for name in convs:
        keep = keep_mask(modules[name])
        assert torch.equal(keep_mask(dict(plain.named_modules())[name]), keep)
        w = dict(plain.named_modules())[name].weight
        assert torch.equal(w[keep], originals[name].weight[keep]) and not w[~keep].any()
    assert any(not torch.equal(modules[n].weight, dict(plain.named_modules())[n].weight) for n in convs)   # refit gone


def test_goals_read_the_summary():
    summary = [{"method": "data-aware-rc", "sparsity": 0.9, "zero_shot": 0.85, "acc": 0.95},
               {"method": "magnitude-rc", "sparsity": 0.9, "zero_shot": 0.1, "acc": 0.96},
               {"method": "data-aware-rc", "sparsity": 0.5, "zero_shot": 0.97}]
    goals = evaluate_goals(summary, dense_acc=0.985)
    assert [g["passed"] for g in goals] == [True, False, False, None]
    assert goals[2]["value"] == pytest.approx(-0.01)


def test_a_subset_of_methods(tmp_path):
    assert main(["bench", "zeroshot", "--quick", "--out", str(tmp_path), "--sparsities", "0.9",
                 "--finetune-sparsities", "", "--methods", "magnitude-rc,score-allocation"]) == 0
    result = json.loads((tmp_path / "zeroshot.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["magnitude-rc", "score-allocation"]
    assert result["config"]["methods"] == ["magnitude-rc", "score-allocation"]
    assert "curve_error" not in result["rows"][1]


@pytest.mark.parametrize("kwargs, match", [(dict(dataset="imagenet"), "dataset"), (dict(seeds=()), "seed"),
                                           (dict(sparsities=(1.2,)), "sparsities"),
                                           (dict(methods=("nope",)), "methods must be among"),
                                           (dict(methods=()), "methods must be among")])
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        run_zeroshot(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
