"""``rcprune bench architectures`` on its quick subset: models that prune (every stage, compacted == masked,
fewer parameters and multiply-adds) and one that is refused (the stage and the node named; a stand-in model
built in place of a torchvision one), JSON and Markdown written. Export and Torch-Pruning are left to the
full bench (they add ~15 s)."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import rcprune.bench.architectures as arch  # noqa: E402
from rcprune.bench.architectures import QUICK, bench_architectures, format_architectures, write_architectures  # noqa: E402


def _refused_model(name, size):
    if name != "reflect":
        return _build(name, size)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), torch.nn.Flatten(),
                               torch.nn.Linear(4 * size * size, 10)).eval()


_build = arch.build


def test_quick_bench_reports_what_prunes_and_what_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(arch, "build", _refused_model)
    rows = bench_architectures(QUICK + ("reflect",), (0.5,), size=32, batch=2, repeats=1, export=False,
                               torch_pruning=False)
    by_model = {r["model"]: r for r in rows}
    for name in QUICK:
        good = by_model[name]
        assert good["ok"] and good["extract"] and good["solve"] and good["compact"] and good["tied_convs"] > 0
        assert good["masked_vs_compact"] <= 1e-5
        assert good["params_compact"] < good["params_dense"] and good["macs_compact"] < good["macs_dense"]
        assert good["speedup"] > 0 and good["seconds"] > 0 and 0 < good["kept_weights"] <= good["budget"]
    refused = by_model["reflect"]
    assert not refused["ok"] and refused["failed"] == "extract" and "node '_0'" in refused["error"]
    js, md = write_architectures(rows, tmp_path / "arch")
    assert json.loads(js.read_text())[0]["model"] == QUICK[0]
    text = md.read_text()
    assert text == format_architectures(rows) + "\n" and "| mobilenet_v3_small | 0.5 | True |" in text
    assert "reflect (0.5): extract: InvalidInstanceError: node '_0'" in text and "padding_mode 'reflect'" in text


def test_the_cli_runs_the_quick_subset(tmp_path, capsys):
    from rcprune.cli import main
    assert main(["bench", "architectures", "--quick", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "| mobilenet_v3_small | 0.5 | True |" in out and "| shufflenet_v2_x0_5 | 0.5 | True |" in out
    assert (tmp_path / "a.json").exists() and (tmp_path / "a.md").exists()


def test_latency_budget_rows_compare_speedup_and_kept_importance_with_torch_pruning(monkeypatch, tmp_path):
    pytest.importorskip("torch_pruning")
    from rcprune.torch import latency_grid
    from tests.torch.cases import flop_time_calls

    # a table timed by FLOPs: under a loaded machine a timed one once made 1.05x need more than the protected
    # minimum (the first solve then cannot reconnect); the final timings stay real
    monkeypatch.setattr(latency_grid, "time_calls", flop_time_calls)
    monkeypatch.setenv("RCPRUNE_CACHE", str(tmp_path))
    model = arch.build("mobilenet_v3_small", 32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _, tp_model = arch.torch_pruning_run(model, x, 0.5)
    row = arch._at_latency(model, x, tp_model, 1.05, repeats=1, calibrate=1)   # well within reach
    assert row["lat_target"] == 1.05 and row["lat_tp_speedup"] > 0
    for space in arch.LATENCY_SPACES:
        assert row[f"lat_{space}_speedup"] > 0 and row[f"lat_{space}_l1_vs_tp"] > 0
        assert 1 <= row[f"lat_{space}_rounds"] <= 2   # the first solve and at most one measured round
    assert "lat_column_l1_vs_tp" in format_architectures([{"model": "m"} | row]).splitlines()[0]
    assert "lat_target" not in format_architectures([{"model": "m"}])


def test_no_latency_target_where_torch_pruning_measured_no_speedup(monkeypatch):
    pytest.importorskip("torch_pruning")
    import rcprune.torch.latency as latency

    monkeypatch.setattr(latency, "time_forms", lambda models, *a, **k: {key: {"ms": 1.0 if key == "dense" else 1.1}
                                                                          for key in models})
    row = bench_architectures(("mobilenet_v3_small",), (0.5,), size=32, batch=2, repeats=1, export=False,
                              latency_budget=True, calibrate=1)[0]
    assert row["ok"] and "lat_target" not in row
    assert row["lat_error"].startswith("Torch-Pruning measured no speedup (0.909x)")
    assert "latency budget: Torch-Pruning measured no speedup" in format_architectures([row])


def test_l1_is_the_conv_and_linear_weights_only():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=True), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                            torch.nn.Linear(2, 1))
    for p in m.parameters():
        torch.nn.init.constant_(p, -1.0)
    assert arch._l1(m) == 2 + 2   # conv 2x1x1x1, linear 1x2; biases and BatchNorm left out
