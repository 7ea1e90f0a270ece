"""Feather sparse training: the operator and its straight-through gradient against the paper's formula and
finite differences, the cubic schedule and the global threshold, the learned mask at the end (exact
sparsity, frozen where it must be, reversible), determinism, and bad input refused before any step."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils import parametrize  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from rcprune.torch import feather as feather_module  # noqa: F401,E402
from rcprune.torch.feather import (FeatherConfig, FeatherSTE, FeatherTraining, cubic_sparsity,  # noqa: E402
                                   feather_threshold, global_magnitude_prune, global_threshold, paper_grad_scale,
                                   prunable_layers)
from rcprune.torch.rcmask import keep_mask, rc_mask  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402


def _reference(w: np.ndarray, tau: float, p: float = 3.0) -> np.ndarray:
    return np.sign(w) * np.maximum(np.abs(w) ** p - tau ** p, 0.0) ** (1.0 / p)


def _data(n: int = 48, size: int = 12, batch: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _weights(model):
    return {n: model.get_submodule(n).weight.detach() for n in prunable_layers(model)}


def _global_sparsity(model) -> float:
    masks = [keep_mask(model.get_submodule(n)) for n in prunable_layers(model)]
    return 1.0 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


# ----------------------------------------------------------------------------- the operator and its gradient

@pytest.mark.parametrize("p", [3.0, 1.0, 2.5])
def test_operator_matches_the_paper_formula(p):
    w = torch.linspace(-2, 2, 401, dtype=torch.float64)
    for tau in (0.0, 0.3, 1.0):
        got = feather_threshold(w, tau, p).numpy()
        np.testing.assert_allclose(got, _reference(w.numpy(), tau, p), rtol=1e-12, atol=1e-12)
    assert torch.equal(feather_threshold(w, 0.0), w.sign() * w.abs().pow(3).pow(1 / 3)) or \
        torch.allclose(feather_threshold(w, 0.0), w, atol=1e-12)
    # p = 1 is soft thresholding; the operator is odd, shrinks, and zeroes exactly |w| <= tau
    np.testing.assert_allclose(feather_threshold(w, 0.5, 1.0).numpy(),
                               np.sign(w.numpy()) * np.maximum(np.abs(w.numpy()) - 0.5, 0), atol=1e-12)
    out = feather_threshold(w, 0.7)
    assert torch.equal(out, -feather_threshold(-w, 0.7))
    assert torch.all(out.abs() <= w.abs()) and torch.equal(out == 0, w.abs() <= 0.7)


def test_true_gradient_against_finite_differences_and_the_formula():
    g = torch.Generator().manual_seed(0)
    w = (torch.rand(40, generator=g, dtype=torch.float64) * 3 - 1.5)
    tau = 0.4
    w = w[(w.abs() - tau).abs() > 0.05].clone().requires_grad_(True)   # away from the kink
    assert torch.autograd.gradcheck(lambda v: feather_threshold(v, tau), (w,), eps=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(feather_threshold(w, tau).sum(), w)
    a = w.detach().abs()
    formula = torch.where(a > tau, a ** 2 * (a ** 3 - tau ** 3).pow(-2.0 / 3.0), torch.zeros_like(a))
    torch.testing.assert_close(grad, formula, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("theta", [1.0, 0.5, 0.2])
def test_straight_through_gradient_scales_the_pruned_weights(theta):
    """dL/dw is dL/dw_sparse (checked by central differences in w_sparse) on kept weights and theta times it
    on pruned ones: the paper's STE with gradient scaling."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    t = torch.randn(7, 6, generator=g, dtype=torch.float64)
    tau = torch.tensor(0.6, dtype=torch.float64)

    def loss_of(ws):
        return ((x @ ws.T - t) ** 2).sum() / 2

    ws = FeatherSTE.apply(w, tau, theta, 3.0)
    torch.testing.assert_close(ws, feather_threshold(w.detach(), tau))
    (grad,) = torch.autograd.grad(loss_of(ws), w)
    base = ws.detach()
    fd = torch.zeros_like(base)
    eps = 1e-6
    for i in range(base.shape[0]):
        for j in range(base.shape[1]):
            up, down = base.clone(), base.clone()
            up[i, j] += eps
            down[i, j] -= eps
            fd[i, j] = (loss_of(up) - loss_of(down)) / (2 * eps)
    pruned = w.detach().abs() <= tau
    assert pruned.any() and (~pruned).any()
    expected = torch.where(pruned, theta * fd, fd)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)


def test_paper_gradient_scale_and_cubic_schedule():
    assert paper_grad_scale(0.98) == 0.5 and paper_grad_scale(0.95) == 1.0 and paper_grad_scale(0.9) == 1.0
    total, sf = 100, 0.9
    s = [cubic_sparsity(t, total, sf) for t in range(total)]
    assert s[0] == 0.0 and all(v == sf for v in s[50:]) and all(a <= b for a, b in zip(s, s[1:]))
    assert s[25] == pytest.approx(sf * (1 - 0.5 ** 3))
    s2 = [cubic_sparsity(t, total, 0.9, initial=0.5, ramp_start=0.2, ramp_end=0.6) for t in range(total)]
    assert s2[:21] == [0.5] * 21 and s2[40] == pytest.approx(0.9 + (0.5 - 0.9) * 0.5 ** 3) and s2[60] == 0.9


def test_global_threshold_prunes_the_target_share():
    g = torch.Generator().manual_seed(2)
    ws = [torch.randn(30, 20, generator=g), torch.randn(50, generator=g) * 3]
    n = sum(w.numel() for w in ws)
    for s in (0.0, 0.37, 0.9, 0.98):
        tau = global_threshold(ws, s)
        below = sum(int((w.abs() <= tau).sum()) for w in ws) if s > 0 else 0
        assert below == round(s * n)
    assert float(global_threshold(ws, 0.0)) == 0.0


# ----------------------------------------------------------------------------- training

def test_feather_ends_with_an_exact_reversible_mask():
    model, x, _ = calibrated_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_w = {n: w.clone() for n, w in _weights(model).items()}
    hist = rct.feather(model, _data(), sparsity=0.8, epochs=3, lr=0.05, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[-1]["sparsity"] == 0.8 and hist[-1]["mask_frozen"]
    assert hist[0]["sparsity"] < 0.8 and hist[0]["threshold"] > 0
    for h in hist:   # the layers' sparsities add up to the epoch's target
        layer_sizes = {n: w.numel() for n, w in dense_w.items()}
        total = sum(h["layer_sparsity"][n] * layer_sizes[n] for n in layer_sizes) / sum(layer_sizes.values())
        assert total == pytest.approx(h["sparsity"], abs=2e-3)
    names = prunable_layers(model)
    assert "conv1" in names and "fc" in names   # stem and classifier are prunable, as in rcprune's convention
    for n in names:
        m = model.get_submodule(n)
        assert rc_mask(m, "weight") is not None and torch.all(m.weight.detach()[~keep_mask(m)] == 0)
    n_all = sum(w.numel() for w in dense_w.values())
    assert _global_sparsity(model) == pytest.approx(round(0.8 * n_all) / n_all, abs=0)
    assert rct.is_masked(model)
    out = model(x)
    assert torch.isfinite(out).all()
    trained = copy.deepcopy(model)
    rct.restore(model)   # the weights before Feather, bit for bit
    after = model.state_dict()
    for n in names:
        assert torch.equal(model.get_submodule(n).weight, dense_w[n])
    assert not any(parametrize.is_parametrized(model.get_submodule(n)) for n in names)
    assert set(after) == set(before)
    rct.bake(trained)
    assert all(int((trained.get_submodule(n).weight == 0).sum()) >= int((~keep_mask(trained.get_submodule(n)) if
               keep_mask(trained.get_submodule(n)) is not None else torch.zeros(1, dtype=torch.bool)).sum())
               for n in names)


def test_mask_stays_fixed_in_the_frozen_phase(monkeypatch):
    seen = []
    step = FeatherTraining.before_step

    def spy(self):
        step(self)
        if self.frozen:
            seen.append({n: keep_mask(m).clone() for n, m in self.modules.items()})
            # pruned weights are exactly zero in the forward while frozen
            assert all(torch.all(m.weight.detach()[~keep_mask(m)] == 0) for m in self.modules.values())

    monkeypatch.setattr(FeatherTraining, "before_step", spy)
    model, _, _ = calibrated_resnet()
    hist = rct.feather(model, _data(), sparsity=0.7, epochs=4, freeze=0.5, ramp_end=0.5, progress=False)
    assert [h["mask_frozen"] for h in hist] == [False, False, True, True]
    assert len(seen) == 6   # 3 steps per epoch, the last two epochs frozen
    for masks in seen[1:]:
        assert all(torch.equal(masks[n], seen[0][n]) for n in masks)
    assert all(torch.equal(keep_mask(model.get_submodule(n)), seen[0][n]) for n in seen[0])


def test_the_mask_is_learned_dense_weights_train_and_switch_is_continuous(monkeypatch):
    """During the ramp the forward is the operator of the dense weights (so pruned weights still get
    gradients and the mask can change); at the freeze the network's function does not jump."""
    model, x, _ = calibrated_resnet()
    start = {n: w.clone() for n, w in _weights(model).items()}
    record = {}
    freeze = FeatherTraining.freeze

    def spy(self):
        if not self.frozen:
            model.eval()
            with torch.no_grad():
                record["before"] = model(x).clone()
                record["pruned_dense"] = {n: m.parametrizations.weight.original.detach().clone()
                                          for n, m in self.modules.items()}
                self.tau = global_threshold(record["pruned_dense"].values(), self.config.sparsity)
                record["ramp_forward"] = model(x).clone()
            freeze(self)
            with torch.no_grad():
                record["after"] = model(x).clone()
            model.train()

    monkeypatch.setattr(FeatherTraining, "freeze", spy)
    rct.feather(model, _data(), sparsity=0.8, epochs=2, freeze=0.5, progress=False)
    torch.testing.assert_close(record["after"], record["ramp_forward"], rtol=1e-5, atol=1e-5)
    dense = record["pruned_dense"]
    masks = {n: keep_mask(model.get_submodule(n)) for n in dense}
    # the dense weights moved, pruned entries included (scaled STE gradients, not zero)
    moved = sum(int((dense[n] != start[n])[~masks[n]].sum()) for n in dense)
    assert moved > 0.5 * sum(int((~masks[n]).sum()) for n in dense)


def test_same_seed_same_model_and_finetune_option_is_the_same_run():
    a, _, _ = calibrated_resnet()
    b, _, _ = calibrated_resnet()
    c, _, _ = calibrated_resnet()
    ha = rct.feather(a, _data(), sparsity=0.9, epochs=2, seed=3, progress=False)
    hb = rct.finetune(b, _data(), 2, sparse_training="feather", sparsity=0.9, seed=3, progress=False)
    rct.feather(c, _data(), sparsity=0.9, epochs=2, seed=4, progress=False)
    assert ha == hb
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_feather_with_distillation_and_a_config():
    model, _, _ = calibrated_resnet()
    teacher = copy.deepcopy(model)
    cfg = FeatherConfig(sparsity=0.6, initial_sparsity=0.2, ramp_start=0.2, ramp_end=0.8, freeze=0.0, grad_scale=0.3,
                        layers=["layer1.0.conv1", "fc"])
    hist = rct.finetune(model, _data(), 2, sparse_training=cfg, teacher=teacher, progress=False)
    assert hist[0]["sparsity"] >= 0.2 and not hist[-1]["mask_frozen"]   # freeze=0: fixed after the last step
    masked = [n for n in prunable_layers(model) if rc_mask(model.get_submodule(n), "weight") is not None]
    assert masked == ["layer1.0.conv1", "fc"]


def test_global_magnitude_prune_is_exact_and_refuses_masked_layers():
    model, _, _ = calibrated_resnet()
    w = _weights(model)
    per_layer = global_magnitude_prune(model, 0.9)
    n = sum(v.numel() for v in w.values())
    assert _global_sparsity(model) == pytest.approx(round(0.9 * n) / n, abs=0)
    assert set(per_layer) == set(w)
    kept = torch.cat([v.abs().reshape(-1)[keep_mask(model.get_submodule(k)).reshape(-1)] for k, v in w.items()])
    dropped = torch.cat([v.abs().reshape(-1)[~keep_mask(model.get_submodule(k)).reshape(-1)] for k, v in w.items()])
    assert kept.min() >= dropped.max()
    with pytest.raises(InvalidInstanceError, match="already carry"):
        global_magnitude_prune(model, 0.5)
    with pytest.raises(InvalidInstanceError, match="already carry"):
        rct.feather(model, _data(), sparsity=0.5, epochs=1, progress=False)


# ----------------------------------------------------------------------------- bad input

def _untouched(model, snapshot):
    state = model.state_dict()
    assert set(state) == set(snapshot) and all(torch.equal(state[k], snapshot[k]) for k in snapshot)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


class _Counting:
    """A loader that counts the batches it hands out (training would take them all)."""

    def __init__(self, loader):
        self.loader, self.taken = loader, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for b in self.loader:
            self.taken += 1
            yield b


@pytest.mark.parametrize("kwargs, match", [
    (dict(sparsity=0.5, initial_sparsity=0.7), "end below its start"),
    (dict(sparsity=1.0), "sparsity"),
    (dict(sparsity=0.5, ramp_start=0.6, ramp_end=0.4), "ramp_end"),
    (dict(sparsity=0.5, ramp_end=0.95, freeze=0.1), "freeze"),
    (dict(sparsity=0.5, grad_scale=0.0), "grad_scale"),
    (dict(sparsity=0.5, p=-1), "p must"),
    (dict(sparsity=0.5, layers=["nope"]), "unknown layer"),
    (dict(sparsity=0.5, epochs=0), "epochs >= 1"),
    (dict(sparsity=0.5, regenerate=True), "regenerate"),
])
def test_bad_settings_fail_before_training_and_leave_the_model(kwargs, match):
    model, _, _ = calibrated_resnet()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _Counting(_data())
    kwargs = {"epochs": 1, **kwargs}
    with pytest.raises(InvalidInstanceError, match=match):
        rct.feather(model, loader, progress=False, **kwargs)
    _untouched(model, snapshot)
    assert loader.taken == 0


@pytest.mark.parametrize("loader, match", [
    ([(torch.zeros(4, 144), torch.zeros(4, dtype=torch.long))], "cannot take"),                  # flattened images
    ([(torch.zeros(4, 3, 12, 12), torch.zeros(4, dtype=torch.long))], "cannot take"),           # wrong channels
    ([(torch.zeros(4, 1, 12, 12), torch.zeros(3, dtype=torch.long))], "targets"),               # 4 inputs, 3 targets
    ([(torch.zeros(4, 1, 12, 12), torch.full((4,), 9))], r"class indices in \[0, 4\)"),          # labels >= classes
    ([(torch.zeros(4, 1, 12, 12), torch.zeros(4, 2))], "targets of shape"),                      # soft targets, wrong width
    (iter([(torch.zeros(4, 1, 12, 12), torch.zeros(4, dtype=torch.long))]), "re-iterable"),
    ([], "empty"),
])
def test_a_loader_with_wrong_shapes_fails_before_any_step(loader, match):
    model, _, _ = calibrated_resnet()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with pytest.raises(InvalidInstanceError, match=match):
        rct.feather(model, loader, sparsity=0.5, epochs=1, progress=False)
    _untouched(model, snapshot)
    assert model.training   # the probe restores the mode


def test_option_errors_name_the_argument():
    model, _, _ = calibrated_resnet()
    with pytest.raises(InvalidInstanceError, match="sparse_training must be"):
        rct.finetune(model, _data(), 1, sparse_training="magic", progress=False)
    with pytest.raises(InvalidInstanceError, match="needs sparsity"):
        rct.finetune(model, _data(), 1, sparse_training="feather", progress=False)
    with pytest.raises(InvalidInstanceError, match="sparsity= is for sparse training"):
        rct.finetune(model, _data(), 1, sparsity=0.5, progress=False)
    with pytest.raises(InvalidInstanceError, match="not both"):
        rct.finetune(model, _data(), 1, sparse_training=FeatherConfig(0.5), sparsity=0.6, progress=False)


def test_a_failing_step_takes_the_operator_off():
    model, _, _ = calibrated_resnet()

    def boom(out, y):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        rct.feather(model, _data(), sparsity=0.5, epochs=1, loss_fn=boom, progress=False)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert isinstance(model.conv1.weight, torch.nn.Parameter)


# ----------------------------------------------------------------------------- the structured (RC) variant

def test_rc_variant_learns_a_row_column_mask_and_freezes_it(monkeypatch):
    from rcprune.torch.feather_rc import RCFeatherTraining

    seen = []
    rc_step = RCFeatherTraining.before_step

    def spy(self):
        rc_step(self)
        if self.frozen:
            seen.append({n: keep_mask(self.model.get_submodule(n)).clone() for n in prunable_layers(self.model)})

    monkeypatch.setattr(RCFeatherTraining, "before_step", spy)
    model, x, _ = calibrated_resnet()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    hist = rct.feather(model, _data(), sparsity=0.7, epochs=4, structure="rc", solve_every=2, freeze=0.5,
                       progress=False)
    assert [h["mask_frozen"] for h in hist] == [False, False, True, True] and hist[-1]["sparsity"] == 0.7
    assert hist[1]["solves"] >= 4
    budget = rct.extract(calibrated_resnet()[0], x[:1], sparsity=0.7).instance.budget
    kept = 0
    for n in prunable_layers(model):
        mask = keep_mask(model.get_submodule(n))
        m2 = mask.reshape(mask.shape[0], -1)
        rows, cols = m2.any(1), m2.any(0)
        assert torch.equal(m2, rows[:, None] & cols[None, :])   # rows x columns
        kept += int(mask.sum())
    assert kept <= budget
    # pruned channels are zero through their BatchNorm too (apply's masks), and the mask stayed fixed
    bn = model.get_submodule("bn1")
    assert keep_mask(bn, "weight") is not None
    assert len(seen) == 6 and all(torch.equal(s[n], seen[0][n]) for s in seen for n in s)
    assert torch.isfinite(model(x)).all()
    for n in prunable_layers(model):   # the layer floor: no layer emptied
        assert int(keep_mask(model.get_submodule(n)).sum()) > 0, n
    rct.restore(model)   # every masked tensor back as before training
    for k, v in model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, start[k]), k


def test_rc_variant_at_high_sparsity_keeps_every_layer():
    model, x, _ = calibrated_resnet()
    rct.feather(model, _data(), sparsity=0.97, epochs=1, structure="rc", solve_every=1, progress=False)
    kept = [int(keep_mask(model.get_submodule(n)).sum()) for n in prunable_layers(model)]
    assert min(kept) > 0 and torch.isfinite(model(x)).all()


def test_rc_variant_settings():
    assert FeatherConfig(0.5, structure="rc").freeze_share == 0.5 and FeatherConfig(0.5).freeze_share == 0.1
    assert FeatherConfig(0.5, structure="rc", ramp_end=0.3, freeze=0.2).freeze_share == 0.2
    with pytest.raises(InvalidInstanceError, match="structure must be"):
        FeatherConfig(0.5, structure="channels")
    with pytest.raises(InvalidInstanceError, match="not with layers"):
        FeatherConfig(0.5, structure="rc", layers=["fc"])
    with pytest.raises(InvalidInstanceError, match="network method"):
        FeatherConfig(0.5, structure="rc", method="magnitude-nope")
    with pytest.raises(InvalidInstanceError, match="solve_every"):
        FeatherConfig(0.5, structure="rc", solve_every=0)
    with pytest.raises(InvalidInstanceError, match="min_density"):
        FeatherConfig(0.5, structure="rc", min_density=1.5)
    model, _, _ = calibrated_resnet()
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidInstanceError, match="cannot take"):
        rct.feather(model, [(torch.zeros(4, 144), torch.zeros(4, dtype=torch.long))], sparsity=0.5, epochs=1,
                    structure="rc", progress=False)
    _untouched(model, snapshot)


# ----------------------------------------------------------------------------- learned allocation

def test_tau_gradient_against_finite_differences():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(200, generator=g, dtype=torch.float64)
    c = torch.randn(200, generator=g, dtype=torch.float64)
    tau0 = 0.5
    w = w[(w.abs() - tau0).abs() > 0.3]   # no weight crosses the threshold, none under the gradient floor
    c = c[: w.numel()]
    tau = torch.tensor(tau0, dtype=torch.float64, requires_grad=True)
    loss = (c * FeatherSTE.apply(w, tau, 1.0, 3.0)).sum()
    (g_tau,) = torch.autograd.grad(loss, tau)
    eps = 1e-6
    fd = ((c * feather_threshold(w, tau0 + eps)).sum() - (c * feather_threshold(w, tau0 - eps)).sum()) / (2 * eps)
    n = w.numel()   # the tau gradient is the derivative's mean over the layer's weights
    assert float(g_tau) * n == pytest.approx(float(fd), rel=1e-6)
    a = w.abs()
    formula = (c * torch.where(a > tau0, -w.sign() * tau0 ** 2 * (a ** 3 - tau0 ** 3).pow(-2 / 3), 0 * a)).sum()
    assert float(g_tau) * n == pytest.approx(float(formula), rel=1e-9)


@pytest.mark.parametrize("distribution", ["laplace", "gaussian"])
def test_learned_allocation_meets_the_global_target_and_learns_the_scales(distribution, monkeypatch):
    from rcprune.torch.feather import fitted_scale

    scales = {}
    freeze = FeatherTraining.freeze

    def spy(self):
        if not self.frozen:
            scales.update({n: float(v.detach().exp()) for n, v in self._log_scales().items()})
        freeze(self)

    monkeypatch.setattr(FeatherTraining, "freeze", spy)
    model, x, _ = calibrated_resnet()
    fitted = {n: float(fitted_scale(w, distribution)) for n, w in _weights(model).items()}
    hist = rct.feather(model, _data(), sparsity=0.8, epochs=2, allocation="learned", distribution=distribution,
                       lr=0.05, progress=False)
    n_all = sum(keep_mask(model.get_submodule(n)).numel() for n in prunable_layers(model))
    assert _global_sparsity(model) == pytest.approx(round(0.8 * n_all) / n_all, abs=0)
    assert set(hist[-1]["layer_sparsity"]) == set(prunable_layers(model))
    assert len({round(v, 3) for v in hist[-1]["layer_sparsity"].values()}) > 1   # layers differ
    assert any(abs(scales[n] - fitted[n]) > 1e-6 * fitted[n] for n in fitted)    # the scales were trained
    assert not any("log_scale" in k for k in model.state_dict())
    assert torch.isfinite(model(x)).all()


def test_learned_allocation_settings():
    with pytest.raises(InvalidInstanceError, match="allocation must be"):
        FeatherConfig(0.5, allocation="uniform")
    with pytest.raises(InvalidInstanceError, match="distribution must be"):
        FeatherConfig(0.5, allocation="learned", distribution="cauchy")
    with pytest.raises(InvalidInstanceError, match="unstructured"):
        FeatherConfig(0.5, allocation="learned", structure="rc")
    with pytest.raises(InvalidInstanceError, match="scale_lr"):
        FeatherConfig(0.5, allocation="learned", scale_lr=-1)
