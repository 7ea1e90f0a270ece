"""``rcprune bench feather --quick``: both rows end to end on digits at one sparsity; goals; arguments."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rcprune.bench.feather import FEATHER_ROWS, MASKED_ROWS, OPTIONAL_ROWS, evaluate_feather_goals, run_feather_bench  # noqa: E402
from rcprune.cli import main  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402


def test_quick_writes_every_row(tmp_path, capsys):
    out = tmp_path / "feather"
    methods = FEATHER_ROWS + OPTIONAL_ROWS
    assert main(["bench", "feather", "--quick", "--out", str(out), "--sparsities", "0.9",
                 "--methods", ", ".join(methods)]) == 0
    result = json.loads((out / "feather.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"feather.json", "feather.md"}
    assert [(r["method"], r["sparsity"]) for r in result["rows"]] == [(m, 0.9) for m in methods]
    for r in result["rows"]:
        assert 0 <= r["acc"] <= 1
        if "rc" in r["method"] or r["method"].startswith("tp-l1"):   # an RC or channel budget: at least the sparsity asked
            assert 0.9 - 1e-9 <= r["measured_sparsity"] < 0.99
        else:
            assert r["measured_sparsity"] == pytest.approx(0.9, abs=1e-3)
        assert ("acc_zero_shot" in r) == (r["method"] in MASKED_ROWS)
        assert ("regenerated" in r) == (r["method"] == "rc-regenerate")
    assert result["config"]["quick"]
    assert [g["passed"] is not None for g in result["goals"]] == [True]
    printed = capsys.readouterr().out
    assert "| feather | 0.9 |" in printed and "## Goals" in printed


def test_goals_read_the_summary():
    summary = [{"method": "magnitude", "sparsity": 0.9, "acc": 0.97}, {"method": "feather", "sparsity": 0.9, "acc": 0.975},
               {"method": "magnitude", "sparsity": 0.98, "acc": 0.90}, {"method": "feather", "sparsity": 0.98, "acc": 0.905},
               {"method": "magnitude", "sparsity": 0.5, "acc": 0.98}]
    goals = evaluate_feather_goals(summary)
    assert [g["passed"] for g in goals] == [None, True, False]
    assert "by >= 1 point" in goals[2]["goal"] and goals[2]["value"] == pytest.approx(0.005)


@pytest.mark.parametrize("kwargs, match", [(dict(dataset="imagenet"), "dataset"), (dict(seeds=()), "seed"),
                                           (dict(sparsities=(1.2,)), "sparsities"), (dict(sparsities=()), "sparsity"),
                                           (dict(epochs=0), "epochs"), (dict(methods=("sgd",)), "methods")])
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(InvalidInstanceError, match=match):
        run_feather_bench(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_rc_recovery_goal_needs_more_than_the_seed_sd():
    rows = [{"method": "magnitude-rc", "sparsity": 0.95, "acc": 0.960, "acc_sd": 0.004},
            {"method": "rc-distill", "sparsity": 0.95, "acc": 0.966, "acc_sd": 0.002},
            {"method": "rc-regenerate", "sparsity": 0.95, "acc": 0.950, "acc_sd": 0.001},
            {"method": "magnitude-rc", "sparsity": 0.98, "acc": 0.900, "acc_sd": 0.004},
            {"method": "feather-rc", "sparsity": 0.98, "acc": 0.903, "acc_sd": 0.001}]
    goals = [g for g in evaluate_feather_goals(rows) if g["goal"].startswith("RC with")]
    assert [g["passed"] for g in goals] == [True, False]
    assert "rc-distill" in goals[0]["goal"] and goals[0]["value"] == pytest.approx(0.006)
    assert "feather-rc" in goals[1]["goal"]
    rows.append({"method": "tp-l1", "sparsity": 0.98, "acc": 0.95, "acc_sd": 0.0})
    goals = [g for g in evaluate_feather_goals(rows) if "Torch-Pruning" in g["goal"]]
    assert [g["passed"] for g in goals] == [False] and goals[0]["value"] == pytest.approx(-0.047)


def test_data_aware_rows_start_from_the_original_weights_under_the_data_aware_masks():
    from rcprune.bench.feather import _pruned
    from rcprune.torch.models import cifar_resnet
    from rcprune.torch.rcmask import keep_mask

    torch.manual_seed(0)
    dense = cifar_resnet(depth=8, width=4, in_channels=1).eval()
    calib = [torch.randn(32, 1, 8, 8)]
    model, options = _pruned("data-aware-rc", dense, calib[0][:1], 0.7, calib)
    _, distill = _pruned("data-aware-rc-distill", dense, calib[0][:1], 0.7, calib)
    assert options == {} and set(distill) == {"teacher"}
    originals = dict(dense.named_modules())
    masked = [(n, m) for n, m in model.named_modules() if keep_mask(m) is not None]
    assert masked
    for name, m in masked:
        keep = keep_mask(m)
        assert torch.equal(m.weight[keep], originals[name].weight[keep]) and not m.weight[~keep].any()
