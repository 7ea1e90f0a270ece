"""The PyTorch adapter, steps 4-5: fine-tuning with fixed masks, least-squares refit."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import apply, compact, extract, finetune, ls_refit  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from tests.checks import accuracy  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402


def _pruned(sparsity=0.9):
    model, x, y = calibrated_resnet()
    ext = extract(model, x[:1], sparsity=sparsity)
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    return model, ext, res.solution, x, y


def _pruned_entries(model, ext, solution):
    eff = solution.effective(ext.instance)
    out = []
    for name, lm in ext.layers.items():
        w = model.get_submodule(lm.module).weight
        keep = np.outer(eff[name].rows, eff[name].cols).reshape(w.shape)
        out.append(w.detach()[torch.from_numpy(~keep)])
    return torch.cat(out)


def test_finetune_keeps_pruned_weights_exactly_zero():
    model, ext, sol, x, y = _pruned()
    loader = [(x[:24], y[:24]), (x[24:], y[24:])]
    before = [p.detach().clone() for p in model.parameters()]
    hist = finetune(model, loader, epochs=1, lr=0.05, val_loader=loader, progress=False)
    assert len(hist) == 1 and set(hist[0]) == {"epoch", "loss", "accuracy", "val_accuracy", "lr"}
    assert hist[0]["val_accuracy"] == accuracy(model, loader) and np.isfinite(hist[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))   # it trained
    zeros = _pruned_entries(model, ext, sol)
    total = sum(model.get_submodule(lm.module).weight.numel() for lm in ext.layers.values())
    assert zeros.numel() == total - rcprune.evaluate(ext.instance, sol).kept_count and torch.all(zeros == 0)
    small, _ = compact(model, sol, ext)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-4
    with pytest.raises(InvalidInstanceError, match="epochs"):
        finetune(model, loader, epochs=-1)


def test_ls_refit_lowers_every_layer_error():
    model, ext, sol, x, _ = _pruned()
    with pytest.raises(InvalidInstanceError, match="masked model"):
        ls_refit(cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4), sol, [x], extraction=ext)
    report = ls_refit(model, sol, [(x[:24],), (x[24:],)], extraction=ext)
    rows = report.table()
    eff = sol.effective(ext.instance)
    kept = [name for name in ext.instance.layer_names if eff[name].rows.any() and eff[name].cols.any()]
    assert [r["layer"] for r in rows] == kept and len(kept) >= len(ext.instance.layer_names) - 2
    for r in rows:
        assert r["refit"] and r["error_after"] < r["error_before"], r
    assert torch.all(_pruned_entries(model, ext, sol) == 0)
    small, _ = compact(model, sol, ext)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-4
