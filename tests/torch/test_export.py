"""``torch.export`` of compacted models: channel pruning (every layer a smaller dense conv) and RC pruning
in each partial mode export, and the exported program computes what the compact model does."""
import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import rcprune  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, compact, extract  # noqa: E402


def _resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():   # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model, torch.randn(2, 3, 64, 64)


def _check_export(small, x):
    with torch.no_grad():
        expected = small(x)
    exported = torch.export.export(small, (x,))
    with torch.no_grad():
        got = exported.module()(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4


def test_export_channel_pruned_resnet18():
    model, x = _resnet18()
    ext = extract(model, x[:1])
    rng = np.random.default_rng(0)
    keep = {g.name: rng.random(g.size) < 0.6 for g in ext.instance.groups if not (g.input or g.protected)}
    sol = NetworkSolution.from_channels(ext.instance, keep)
    masked = apply(model, sol, ext)
    small, report = compact(masked, sol, ext)
    assert {r["mode"] for r in report.layers} <= {"conv", "linear"}
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() <= 1e-4
    _check_export(small, x)


@pytest.mark.parametrize("partial", ["auto", "im2col", "conv"])
def test_export_rc_pruned_resnet18(partial):
    model, x = _resnet18()
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    masked = apply(model, res.solution, ext)
    small, report = compact(masked, res.solution, ext, partial=partial)
    assert any(r["mode"] not in ("conv", "linear") for r in report.layers)   # partial layers are there
    _check_export(small, x)


def test_timed_auto_picks_a_measured_mode_and_keeps_outputs():
    model, x = _resnet18()
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    masked = apply(model, res.solution, ext)
    untimed = {r["layer"]: r["mode"] for r in compact(masked, res.solution, ext)[1].layers}
    small, report = compact(masked, res.solution, ext, example_inputs=x, repeats=1)
    timed = [r for r in report.layers if "ms" in r]
    # every layer that the cost model compacts partially is timed in each partial form, and gets the fastest
    assert [r["layer"] for r in timed] == [n for n, mode in untimed.items() if mode in ("im2col", "conv-zeros")]
    for r in timed:
        assert set(r["ms"]) == {"im2col", "conv-zeros"} and r["ms"][r["mode"]] == min(r["ms"].values()), r
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() <= 1e-4
    with pytest.raises(rcprune.InvalidInstanceError, match="example_inputs"):
        compact(masked, res.solution, ext, partial="conv", example_inputs=x)


@pytest.mark.parametrize("faster", ["im2col", "conv-zeros"])
def test_timed_auto_follows_the_timings(monkeypatch, faster):
    """Timings made up here (``faster`` takes 1 ms, the other form 2 ms): every timed layer takes ``faster``."""
    compact_module = importlib.import_module("rcprune.torch.compact")   # rcprune.torch.compact is also a function

    def made_up(options, x, *, repeats, warmup):
        return {mode: 1.0 if mode == faster else 2.0 for mode in options}

    monkeypatch.setattr(compact_module, "measure_latency", made_up)
    model, x = _resnet18()
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    masked = apply(model, res.solution, ext)
    small, report = compact(masked, res.solution, ext, example_inputs=x, repeats=1)
    timed = [r for r in report.layers if "ms" in r]
    assert timed and all(r["mode"] == faster and r["ms"] == {faster: 1.0, **{m: 2.0 for m in r["ms"] if m != faster}}
                         for r in timed)
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() <= 1e-4
