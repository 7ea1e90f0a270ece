"""Sequential compensation of a network solution (rcprune.torch.compensate) and prune(calibration=...)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from rcprune.network.model import NetworkSolution
from rcprune.torch import apply, extract, prune, restore
from rcprune.torch.compensate import compensate
from rcprune.torch.rcmask import keep_mask
from rcprune.validation import InvalidInstanceError

from tests.torch.cases import calibrated_resnet


def _mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.randn(96, 6, dtype=torch.float32)
    return net, x


def _lstsq_with_bias(inputs, target):
    a = np.hstack([inputs, np.ones((len(inputs), 1))])
    coef = np.linalg.lstsq(a, target, rcond=None)[0]
    return coef[:-1].T, coef[-1]


def test_refit_and_bias_match_least_squares():
    net, x = _mlp()
    dense = copy.deepcopy(net)
    ext = extract(net, x[:1])
    rows0, cols0 = np.array([1, 1, 0, 1, 1], bool), np.array([1, 1, 1, 0, 1, 0], bool)
    cols2 = np.ones(5, bool)                         # column 2 reads the dead channel 2
    sol = NetworkSolution({"0": (rows0, cols0), "2": (np.ones(3, bool), cols2)})
    final, report = compensate(net, sol, [x[:48], x[48:]], extraction=ext, layer_method="refit", damping=0,
                               batchnorm=False)
    xd = x.double().numpy()
    with torch.no_grad():
        y0 = dense[0](x).double().numpy()
        v0, b0 = _lstsq_with_bias(xd[:, cols0], y0[:, rows0])
        np.testing.assert_allclose(net[0].weight.double().numpy()[np.ix_(rows0, cols0)], v0, atol=1e-5)
        np.testing.assert_allclose(net[0].bias.double().numpy()[rows0], b0, atol=1e-5)
        z = torch.relu(net[0](x)).double().numpy()        # the pruned network's input to layer 2
        y2 = dense(x).double().numpy()
        live = cols2 & rows0
        v2, b2 = _lstsq_with_bias(z[:, live], y2)
        np.testing.assert_allclose(net[2].weight.double().numpy()[:, live], v2, atol=1e-5)
        np.testing.assert_allclose(net[2].bias.double().numpy(), b2, atol=1e-5)
        assert not net[2].weight[:, ~live].any() and not net[0].weight[~rows0].any()
        resid = ((y0[:, rows0] - xd[:, cols0] @ v0.T - b0) ** 2).sum() / len(x)
        energy = ((y0 - y0.mean(0)) ** 2).sum() / len(x)
    assert report.layers[0]["error"] == pytest.approx((resid + ((y0[:, ~rows0] - y0[:, ~rows0].mean(0)) ** 2).sum()
                                                       / len(x)) / energy, rel=1e-6)
    assert final["2"].cols.tolist() == live.tolist()     # refit keeps the (live) columns
    restore(net)
    for p, q in zip(net.parameters(), dense.parameters()):
        assert torch.equal(p, q)                          # the originals come back bit for bit


def test_without_batchnorm_every_layer_error_at_most_the_masked_one():
    net, x = _mlp()
    ext = extract(net, x[:1], sparsity=0.5)
    from rcprune import solve
    sol = solve(ext.instance, method="network-greedy").solution
    _, report = compensate(net, sol, [x], extraction=ext, layer_method="structured-obs", damping=0.01)
    for r in report.layers:
        assert r["error"] <= r["error_masked"] + 1e-12


@pytest.fixture(scope="module")
def resnet():
    return calibrated_resnet()


def test_prune_with_calibration_keeps_rows_budget_and_compacts(resnet):
    model, x, _ = resnet
    calib = [x[:24], x[24:]]
    plain, plain_rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=calib, layer_method="refit")
    masked, rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=calib, seed=3)
    assert rep.kept_weights <= rep.budget and rep.compensation is not None
    assert len(rep.compensation.layers) == len(rep.extraction.instance.layer_names)
    for name in rep.extraction.instance.layer_names:   # rows: the network's (less unread ones); counts kept
        assert not (rep.solution[name].rows & ~plain_rep.solution[name].rows).any()
    small, _ = prune(model, x[:1], sparsity=0.7, calibration=calib, seed=3)
    with torch.no_grad():
        a, b = masked.eval()(x), small(x)
    assert float((a - b).norm() / a.norm()) < 1e-5
    again, _ = prune(model, x[:1], sparsity=0.7, compact=False, calibration=calib, seed=3)
    for (k, p), q in zip(masked.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), k                     # same seed, same model
    for name, m in model.named_modules():               # the user's model is untouched
        assert keep_mask(m) is None


def test_forced_columns_stay_under_a_channel_floor(resnet):
    from dataclasses import replace

    from rcprune import solve
    from rcprune.network.floor import channel_floor

    model, x, _ = resnet
    model = copy.deepcopy(model)
    ext = extract(model, x[:1], sparsity=0.6)
    ext = replace(ext, instance=channel_floor(ext.instance, 0.5))
    sol = solve(ext.instance, method="network-greedy").solution
    final, report = compensate(model, sol, [x], extraction=ext, layer_method="structured-obs")
    assert sum(r["changed"] for r in report.layers) > 0          # columns were re-chosen ...
    eff = final.effective(ext.instance)
    for name in ext.instance.layer_names:                        # ... but never a floor column dropped
        assert eff[name].cols[ext.instance.fixed_cols(name)].all(), name
        assert eff[name].cols.sum() <= sol.effective(ext.instance)[name].cols.sum()


def test_calibration_beats_magnitude_on_the_layer_error(resnet):
    model, x, _ = resnet
    _, rep = prune(model, x[:1], sparsity=0.8, compact=False, calibration=[x])
    med = rep.compensation.medians()
    assert med["error"] < med["error_masked"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(calibration=iter([torch.zeros(2, 1, 12, 12)])), "iterator"),
    (dict(calibration=[torch.zeros(2, 1, 12, 12)], layer_method="annealing"), "layer_method"),
    (dict(calibration=[torch.zeros(2, 1, 12, 12)], refit=[torch.zeros(2, 1, 12, 12)]), "not both"),
    (dict(scores="hessian"), "needs calibration"),
    (dict(layer_method="refit"), "needs calibration"),
    (dict(calibration=[torch.zeros(2, 1, 12, 12)], granularity="channel", layer_method="structured-obs"), "refit"),
    (dict(calibration=torch.zeros(2, 1, 12, 12)), "iterable of batches"),
])
def test_bad_calibration_input(resnet, kwargs, match):
    model, x, _ = resnet
    with pytest.raises(InvalidInstanceError, match=match):
        prune(model, x[:1], sparsity=0.5, **kwargs)


def test_nan_and_singular_calibration_name_the_layer():
    net, x = _mlp()
    ext = extract(net, x[:1])
    sol = NetworkSolution({"0": (np.ones(5, bool), np.array([1, 1, 1, 0, 1, 1], bool)), "2": (np.ones(3, bool), np.ones(5, bool))})
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InvalidInstanceError, match="layer '0'.*not finite"):
        compensate(copy.deepcopy(net), sol, [bad], extraction=ext)
    dead = x.clone()
    dead[:, 1] = 0.0                                     # input 1 never varies: H singular without damping
    with pytest.raises(InvalidInstanceError, match="layer '0'.*raise damping"):
        compensate(copy.deepcopy(net), sol, [dead], extraction=ext, damping=0)
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(InvalidInstanceError, match="layer_method"):
        compensate(net, sol, [x], extraction=ext, layer_method="greedy-row-column")
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))


def test_default_method_refits_large_layers(resnet, monkeypatch):
    import sys

    comp = sys.modules["rcprune.torch.compensate"]   # the package exports the function under the same name
    model, x, _ = resnet
    monkeypatch.setattr(comp, "MAX_DEFAULT_COLUMNS", 40)
    monkeypatch.setattr(comp, "BLOCK_STEPS", 8)
    ext = extract(copy.deepcopy(model), x[:1], sparsity=0.6)
    from rcprune import solve
    sol = solve(ext.instance, method="network-greedy").solution
    work = copy.deepcopy(model)
    apply(work, sol, ext)
    _, report = compensate(work, sol, [x], extraction=ext, progress=True)
    assert report.layer_method == "default"
    methods = {r["layer"]: r["method"] for r in report.layers}
    assert set(methods.values()) == {"structured-obs", "compensated-rc-tabu"}
    for r in report.layers:
        assert (r["method"] == "structured-obs") == ("block" in r)
        assert (r["alive_cols"] > 40) == ("block" in r)
        if "block" in r:
            assert r["block"] == -(-r["alive_cols"] // 8) and r["block"] > 1


def test_finetune_after_calibration_starts_from_the_original_weights(resnet, monkeypatch):
    import rcprune.torch.pipeline as pipeline

    model, x, y = resnet
    starts = []

    def record(work, loader, epochs, **kw):     # what the fine-tune is handed, instead of training
        starts.append({n: m.weight.detach().clone() for n, m in work.named_modules() if isinstance(m, nn.Conv2d)})
        return []

    monkeypatch.setattr(pipeline, "finetune_model", record)
    data = {"train_loader": [(x, y)], "epochs": 1}
    _, rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=[x], finetune=data)
    _, rep_refit = prune(model, x[:1], sparsity=0.7, compact=False, calibration=[x], finetune=data,
                         finetune_from_refit=True)
    dense = dict(model.named_modules())
    for name, w in starts[0].items():                   # masked originals
        keep = w != 0
        assert torch.equal(w[keep], dense[name].weight[keep]), name
    assert any(not torch.equal(a, b) for a, b in zip(starts[0].values(), starts[1].values()))   # the refit start


def test_masks_on_original_keeps_the_masks_over_the_dense_weights(resnet):
    from rcprune.torch.batchnorm import reestimate_batchnorm
    from rcprune.torch.pipeline import masks_on_original

    model, x, _ = resnet
    work, rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=[x])
    refit = {n: m.weight.detach().clone() for n, m in work.named_modules() if isinstance(m, nn.Conv2d)}
    masks_on_original(work, [x])
    dense = dict(model.named_modules())
    expected = copy.deepcopy(model)
    apply(expected, rep.result.solution, rep.extraction)
    reestimate_batchnorm(expected, [x])
    for name, m in work.named_modules():
        if isinstance(m, nn.Conv2d):
            keep = refit[name] != 0
            assert torch.equal(m.weight[keep], dense[name].weight[keep]) and not m.weight[~keep].any(), name
        if isinstance(m, nn.BatchNorm2d):
            other = dict(expected.named_modules())[name]
            assert torch.allclose(m.running_mean, other.running_mean) and torch.allclose(m.running_var, other.running_var)
    assert any(not torch.equal(refit[n], dict(work.named_modules())[n].weight) for n in refit)   # the refit is gone
    restore(work)      # still reversible: the dense weights come back
    assert all(torch.equal(m.weight, dense[n].weight) for n, m in work.named_modules() if isinstance(m, nn.Conv2d))
