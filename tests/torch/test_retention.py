"""Small-weight retention on PyTorch models: hooks, masks, refit, restore, errors, end to end."""
import copy
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.validation import kept_from_fraction  # noqa: E402
from rcprune.retention.model import hessian_from_inputs  # noqa: E402
from rcprune.torch import bake, restore  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from rcprune.torch.rcmask import keep_mask, rc_mask  # noqa: E402
from rcprune.torch.retention import (layer_hessians, restore_original, retention_layers,  # noqa: E402
                                     retention_prune)
from tests.checks import accuracy  # noqa: E402


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1)
        self.conv2 = nn.Conv2d(4, 3, 2, padding=0, bias=False)
        self.fc = nn.Linear(3 * 2 * 2, 5)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def _tiny(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def _batches(count=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    # correlated channels, so retention has something to find
    out = []
    for _ in range(count):
        base = torch.randn(5, 1, 6, 6, generator=g)
        x = torch.cat([base, -0.9 * base + 0.3 * torch.randn(5, 1, 6, 6, generator=g)], 1)
        out.append((x, torch.zeros(5, dtype=torch.long)))
    return out


def _unfolded(model, batches):
    """Layer inputs recorded by plain forward hooks, unfolded by hand."""
    seen = {"conv": [], "conv2": [], "fc": []}
    hs = [getattr(model, n).register_forward_hook(lambda m, a, o, n=n: seen[n].append(a[0].detach()))
          for n in seen]
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    for h in hs:
        h.remove()
    sizes = [x.shape[0] for x in seen["fc"]]
    conv = F.unfold(torch.cat(seen["conv"]), 3, padding=1, stride=2)     # one call each: unfold is slow
    conv2 = F.unfold(torch.cat(seen["conv2"]), 2)                        # on an oversubscribed CPU
    return {"conv": [c.transpose(1, 2).reshape(-1, 18).T.double() for c in conv.split(sizes)],
            "conv2": [c.transpose(1, 2).reshape(-1, 16).T.double() for c in conv2.split(sizes)],
            "fc": [x.T.double() for x in seen["fc"]]}


def test_hessians_from_hooks_equal_unfolded_inputs():
    model, batches = _tiny(), _batches(3)
    hs, counts = layer_hessians(model, batches)
    cols = _unfolded(model, batches)
    for name in ("conv", "conv2", "fc"):
        ref = hessian_from_inputs(iter([c.numpy() for c in cols[name]]))
        assert hs[name].dtype == np.float64
        np.testing.assert_allclose(hs[name], ref, rtol=1e-12, atol=1e-12)
        assert counts[name] == sum(c.shape[1] for c in cols[name])
    assert counts["conv"] == 3 * 5 * 9 and counts["fc"] == 15


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 2), stride=(2, 1),
                                    padding=(2, 0), dilation=(2, 1)), dict(kernel_size=3, padding="same"),
                                    dict(kernel_size=2, padding="valid", stride=3)])
def test_im2col_matches_unfold(kwargs):
    from rcprune.torch.retention import layer_inputs

    conv = nn.Conv2d(3, 2, **kwargs)
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(1))[:, :, 1:, ::2]   # a strided view
    pad = {"same": (1, 1), "valid": (0, 0)}.get(conv.padding, conv.padding)
    ref = F.unfold(x, conv.kernel_size, conv.dilation, pad, conv.stride)
    ref = ref.transpose(1, 2).reshape(-1, ref.shape[1])
    assert torch.equal(layer_inputs(conv, x), ref)


def test_masks_keep_k_per_row_and_pruned_weights_are_zero_in_forward():
    model, batches = _tiny(), _batches(2)
    rep = retention_prune(model, batches, 0.75, method="retention-greedy")
    for r in rep.layers:
        mod = model.get_submodule(r["name"])
        mask = keep_mask(mod).reshape(mod.weight.shape[0], -1)
        assert r["k"] == round(0.25 * r["n"])
        assert (mask.sum(1) == r["k"]).all()
        assert mask.dtype == torch.bool
    # the forward sees the masked weight: pruned weights are exactly zero there
    seen = {}
    h = model.conv2.register_forward_pre_hook(lambda m, a: seen.__setitem__("w", m.weight.detach().clone()))
    model(batches[0][0])
    h.remove()
    assert (seen["w"][~keep_mask(model.conv2)] == 0).all()
    assert (seen["w"][keep_mask(model.conv2)] != 0).all()


def _layer_error(dense_w, w, cols):
    d = (dense_w - w).reshape(dense_w.shape[0], -1).double()
    return sum(float(((d @ c) ** 2).sum()) for c in cols)


def test_refit_lowers_the_calibration_error_and_restore_gives_the_weights_back():
    batches = _batches(3)
    dense = _tiny()
    originals = {n: getattr(dense, n).weight.detach().clone() for n in ("conv", "conv2", "fc")}
    cols = _unfolded(dense, batches)
    plain, fitted = _tiny(), _tiny()
    rp = retention_prune(plain, batches, 0.8, method="retention-annealing", damping=0.0)
    rf = retention_prune(fitted, batches, 0.8, method="retention-annealing", damping=0.0, refit=True)
    for name in ("conv", "conv2", "fc"):
        e_plain = _layer_error(originals[name], getattr(plain, name).weight.detach(), cols[name])
        e_fit = _layer_error(originals[name], getattr(fitted, name).weight.detach(), cols[name])
        assert e_fit <= e_plain * (1 + 1e-9) + 1e-12, name
        assert torch.equal(keep_mask(plain.get_submodule(name)), keep_mask(fitted.get_submodule(name)))
        # the refit went into the trainable values; the stored originals are untouched
        assert not torch.equal(rc_mask(getattr(fitted, name), "weight").value, originals[name])
        assert torch.equal(getattr(fitted, name).parametrizations.weight.original, originals[name])
    assert rf.totals()["error_refit"] <= rp.totals()["error"] * (1 + 1e-9)
    assert torch.equal(rc_mask(plain.conv, "weight").value, originals["conv"])
    restore(plain)
    restore(fitted)
    for name in ("conv", "conv2", "fc"):
        assert torch.equal(getattr(plain, name).weight, originals[name])
        assert torch.equal(getattr(fitted, name).weight, originals[name])
        assert keep_mask(getattr(fitted, name)) is None and type(getattr(fitted, name)) in (nn.Conv2d, nn.Linear)


def test_compensated_methods_report_the_masked_error_and_write_their_own_refit():
    batches = _batches(3)
    dense = _tiny()
    originals = {n: getattr(dense, n).weight.detach().clone() for n in ("conv", "conv2", "fc")}
    cols = _unfolded(dense, batches)
    plain, fitted = _tiny(), _tiny()
    rp = retention_prune(plain, batches, 0.8, method="compensated-tabu")
    rf = retention_prune(fitted, batches, 0.8, method="compensated-tabu", refit=True)
    for rep, model in ((rp, plain), (rf, fitted)):
        for row in rep.layers:
            name = row["name"]
            samples = sum(c.shape[1] for c in cols[name])
            actual = _layer_error(originals[name], getattr(model, name).weight.detach(), cols[name]) / samples
            # the report's error is the masked layer's, error_refit the refit one's (damped H: approximately)
            assert row["error_refit"] <= row["error"] * (1 + 1e-9)
            if model is plain:
                assert actual == pytest.approx(row["error"], rel=0.05, abs=1e-9)
            else:
                assert actual <= row["error"] * (1 + 1e-6) + 1e-12
    assert rp.totals()["error_refit"] == pytest.approx(rf.totals()["error_refit"])


def test_sequential_calibration_takes_each_h_from_the_network_pruned_so_far():
    batches = _batches(3)
    seq = retention_prune(_tiny(), batches, 0.7, method="compensated-tabu", refit=True, sequential=True,
                          target="layer", batchnorm=False)
    one = retention_prune(_tiny(), batches, 0.7, method="compensated-tabu", refit=True)
    assert seq.layers[0]["error"] == pytest.approx(one.layers[0]["error"])   # the first layer sees the same inputs
    # by hand: prune and refit conv alone, then conv2's inputs come from that network
    by_hand = _tiny()
    retention_prune(by_hand, batches, 0.7, method="compensated-tabu", refit=True, layers=["conv"])
    second = retention_prune(by_hand, batches, 0.7, method="compensated-tabu", refit=True, layers=["conv2"])
    assert seq.layers[1]["error"] == pytest.approx(second.layers[0]["error"])
    assert seq.layers[1]["error"] != pytest.approx(one.layers[1]["error"])
    with pytest.raises(InvalidInstanceError, match="not an iterator"):
        retention_prune(_tiny(), iter(batches), 0.7, sequential=True)


def test_dense_target_solves_the_dense_layer_refit_to_the_pruned_inputs():
    from rcprune.compensation import dense_target
    from rcprune.retention.model import RetentionInstance
    from rcprune.solve import solve

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    dense = copy.deepcopy(net)
    x = torch.randn(80, 6)
    x[:, 1] = 0.8 * x[:, 0] + 0.2 * x[:, 1]
    batches = [x[:40], x[40:]]
    rep = retention_prune(net, batches, 0.5, method="obc", refit=True, sequential=True)
    by_hand = copy.deepcopy(dense)
    retention_prune(by_hand, batches, 0.5, method="obc", refit=True, layers=["0"])
    with torch.no_grad():
        torch.testing.assert_close(net[0].weight, by_hand[0].weight)     # the first layer: its own inputs
        xp = torch.relu(by_hand[0](x)).double().numpy()
        y = (torch.relu(dense[0](x)) @ dense[2].weight.T).double().numpy()
    h, b = xp.T @ xp / len(xp), y.T @ xp / len(xp)
    w = dense[2].weight.detach().double().numpy()
    wt, _ = dense_target(b, h, w, 0.01)
    res = solve(RetentionInstance(wt, h, sparsity=0.5, damping=0.01), method="obc")
    np.testing.assert_allclose(net[2].weight.detach().double().numpy(), res.evaluation.weights, atol=1e-5)
    v = res.evaluation.weights      # the report: the output error against the dense layer
    assert rep.layers[1]["error_refit"] == pytest.approx(((y - xp @ v.T) ** 2).sum(1).mean(), rel=1e-6)
    with pytest.raises(InvalidInstanceError, match="target must be"):
        retention_prune(copy.deepcopy(dense), batches, 0.5, sequential=True, target="teacher")


def test_retention_beats_magnitude_on_correlated_inputs_and_bake_keeps_zeros():
    model, batches = _tiny(), _batches(3)
    rep = retention_prune(model, batches, 0.75, method="retention-exact", layers=["conv"])
    r = rep.layers[0]
    assert r["error"] <= r["error_magnitude"] * (1 + 1e-9) and r["status"] == "optimal"
    assert [x["name"] for x in rep.layers] == ["conv"] and keep_mask(model.fc) is None
    mask = keep_mask(model.conv).clone()
    bake(model)
    assert (model.conv.weight[~mask] == 0).all() and keep_mask(model.conv) is None


def test_same_seed_same_masks():
    masks = []
    for _ in range(2):
        model = _tiny()
        retention_prune(model, _batches(2), 0.8, method="retention-annealing", seed=3)
        masks.append(keep_mask(model.conv2).clone())
    assert torch.equal(*masks)


@pytest.mark.parametrize("kwargs, message", [
    ({"sparsity": 1.5}, "sparsity must be in [0, 1)"),
    ({"sparsity": -0.1}, "sparsity must be in [0, 1)"),
    ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
    ({"sparsity": "0.5"}, "sparsity must be a number"),
    ({"sparsity": 0.5, "layers": ["nope"]}, "unknown layer name 'nope'"),
    ({"sparsity": 0.5, "method": "greedy-row-column"}, "unknown retention method"),
    ({"sparsity": 0.5, "scope": "column"}, "scope must be one of"),
    ({"sparsity": 0.5, "damping": -1.0}, "damping must be"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(InvalidInstanceError, match=re.escape(message)):
        retention_prune(_tiny(), _batches(1), **kwargs)


def test_grouped_conv_is_refused_by_name_and_skipped_by_default():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    data = [torch.randn(3, 4, 6, 6)]
    with pytest.raises(InvalidInstanceError, match="grouped convolution"):
        retention_prune(model, data, 0.5, layers=["0"])
    assert retention_layers(model) == (["2"], ["0"])
    rep = retention_prune(model, data, 0.5, method="magnitude")
    assert rep.skipped == ("0",) and [r["name"] for r in rep.layers] == ["2"]


def test_already_masked_and_empty_calibration_are_refused():
    model = _tiny()
    retention_prune(model, _batches(1), 0.5, method="magnitude", layers=["fc"])
    with pytest.raises(InvalidInstanceError, match="already carry a pruning mask"):
        retention_prune(model, _batches(1), 0.5, layers=["fc"])
    with pytest.raises(InvalidInstanceError, match="no calibration input"):
        retention_prune(_tiny(), [], 0.5)


def test_resnet_end_to_end_with_layer_scope():
    model = cifar_resnet(depth=8, width=4, in_channels=1, num_classes=3, seed=0).eval()
    data = [torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    before = model(data[0]).detach()
    rep = retention_prune(model, data, 0.9, method="retention-annealing", scope="layer", refit=True)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [r["name"] for r in rep.layers] == convs
    for r in rep.layers:
        mod = model.get_submodule(r["name"])
        assert int(keep_mask(mod).sum()) == r["k"] == r["kept"] == kept_from_fraction(r["m"] * r["n"], sparsity=0.9)
        assert r["error"] <= r["error_magnitude"] * (1 + 1e-9) + 1e-12
        assert r["error_refit"] <= r["error"] * (1 + 1e-9) + 1e-12
    tot = rep.totals()
    assert tot["kept"] == sum(int(keep_mask(model.get_submodule(n)).sum()) for n in convs)
    assert model(data[0]).shape == before.shape
    restore_original(model, rep)   # the older name of restore
    assert torch.equal(model(data[0]).detach(), before)


def test_trained_bench_and_cli_on_a_tiny_resnet(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    import functools

    import rcprune.bench.trained_retention as rb
    from rcprune.cli import main

    tiny = functools.partial(rb.bench_trained_retention, depth=8, width=4, train_epochs=0,
                             methods=("magnitude", "retention-greedy", "retention-exact"))
    rows = tiny(tmp_path, time_limit=5, log=lambda msg: None)
    convs = [n for n, m in cifar_resnet(8, 4, 1, 10).named_modules() if isinstance(m, nn.Conv2d)]
    assert list(dict.fromkeys(r["layer"] for r in rows)) == convs
    for r in rows:
        assert r["k"] == kept_from_fraction(r["n"], sparsity=0.9)
        kept = r["m"] * r["k"]   # the share is of the kept weights
        assert r["retained_small_share"] == (r["retained_small"] / kept if kept else 0.0)
        if r["method"] == "magnitude":
            assert r["improvement"] == 0 and r["retained_small"] == 0
        else:
            assert r["cost"] <= r["magnitude_cost"] * (1 + 1e-9)
    exact = [r for r in rows if r["method"] == "retention-exact"]
    assert exact and all(r["n"] <= 20 and r["status"] == "optimal" for r in exact)
    monkeypatch.setattr(rb, "bench_trained_retention", tiny)
    assert main(["bench", "retention", "--trained", "--cache", str(tmp_path), "--time-limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "trained digits ResNet" in out and "retention-greedy: >= 20% lower error" in out


def test_demo_rows_equal_budget_and_same_finetuning():
    from torch.utils.data import DataLoader, TensorDataset

    from rcprune.bench.retention_demo import retention_demo_rows

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator())
    test = DataLoader(TensorDataset(x, y), batch_size=32)
    dense = cifar_resnet(depth=8, width=4, in_channels=1, num_classes=3, seed=0).eval()
    before = [p.detach().clone() for p in dense.parameters()]
    rows = retention_demo_rows(dense, (train, test), 0.9, epochs=1, method="retention-greedy", calibration_batches=2)
    assert [r["method"] for r in rows] == ["magnitude-per-row", "retention", "retention+refit"]
    assert len({r["kept_weights"] for r in rows}) == 1
    mag, ret, fit = rows
    assert ret["layer_error"] <= mag["layer_error"] * (1 + 1e-9) and fit["layer_error"] <= ret["layer_error"] * (1 + 1e-9)
    assert ret["layer_error_magnitude"] == mag["layer_error"]
    assert all(len(r["history"]) == 1 for r in rows)
    # the same pruning redone here (a fresh loader with an unseeded generator draws the same first batches)
    calib = [b for _, b in zip(range(2), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                                                    generator=torch.Generator()))]
    for r in rows:
        pruned = copy.deepcopy(dense)
        retention_prune(pruned, calib, 0.9, method=r["solver"], refit=r["method"] == "retention+refit")
        assert r["acc_zero_shot"] == accuracy(pruned, test), r["method"]
    assert all(torch.equal(a, b) for a, b in zip(before, dense.parameters()))   # the dense model is untouched
