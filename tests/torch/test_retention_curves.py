"""retention_prune(allocation="curves"): per-layer error curves (SparseGPT's mask at each count, error after
the exact refit), the knapsack split of the global budget, and the masks it leads to."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.retention.model import RetentionInstance  # noqa: E402
from rcprune.solve import solve  # noqa: E402
from rcprune.torch.rcmask import keep_mask  # noqa: E402
from rcprune.torch.retention import layer_hessians, retention_prune  # noqa: E402
from rcprune.torch.retention_curves import allocate_retention, layer_curve  # noqa: E402
from rcprune.validation import kept_from_fraction  # noqa: E402
from tests.torch.test_retention import _batches, _tiny  # noqa: E402


def _weights(model, name):
    w = dict(model.named_modules())[name].weight.detach()
    return w.reshape(w.shape[0], -1).to(torch.float64).numpy()


@pytest.mark.parametrize("scope", ["row", "layer"])
def test_layer_curve_is_sparsegpt_after_the_refit_at_each_count(scope):
    model, data = _tiny(), _batches()
    h = layer_hessians(model, data, ["conv2"])[0]["conv2"]
    w = _weights(model, "conv2")
    m, n = w.shape
    keep = kept_from_fraction(n if scope == "row" else m * n, sparsity=0.7)
    counts, errors = layer_curve("conv2", w, h, dict(points=5, keep=keep, scope=scope, damping=0.01))
    assert counts[-1] == m * n and errors[-1] == 0.0
    assert (m * keep if scope == "row" else keep) in counts.tolist()   # the uniform split is a choice
    if scope == "row":
        assert (counts % m == 0).all()
    for total, e in zip(counts[:-1], errors[:-1]):
        k = int(total // m) if scope == "row" else int(total)
        inst = RetentionInstance(w, h, k=k, scope=scope, damping=0.01, objective="compensated")
        assert e == pytest.approx(solve(inst, method="sparsegpt").cost, rel=1e-12)
        assert e >= solve(inst, method="obc").cost - 1e-9 if scope == "row" else e >= 0


def test_every_row_keeps_a_weight_on_the_curves_and_a_budget_below_that_is_an_error():
    """A layer whose uniform share rounds to nothing (9 weights per row at 95%) still starts at one per
    row (its curve does not see that every later layer depends on it); a sparsity leaving less than one
    weight per row of every layer is refused with the largest one possible, the model untouched."""
    model, data = _tiny(), _batches()
    h = layer_hessians(model, data, ["conv2"])[0]["conv2"]
    w, h = _weights(model, "conv2")[:, :9], h[:9, :9]
    counts, _ = layer_curve("c", w, h, dict(points=3, keep=0, scope="row", damping=0.01))
    assert counts.tolist() == [w.shape[0] * k for k in (1, 3, 6, 9)]
    counts, _ = layer_curve("c", w, h, dict(points=3, keep=1, scope="row", damping=0.01))
    assert counts[0] == w.shape[0]
    # Tiny: rows 4 + 3 + 5 = 12 of 72 + 48 + 60 = 180 weights: at most 1 - 12/180 = 0.9333
    class NoPass(list):   # the refusal comes before any calibration pass
        def __iter__(self):
            raise AssertionError("a calibration pass before the budget check")

    with pytest.raises(InvalidInstanceError, match=r"at least one weight per row of every layer \(12 of 180\).* at most 0.9333"):
        retention_prune(model, NoPass(data), 0.95, method="sparsegpt", allocation="curves")
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    torch.manual_seed(0)   # a one-channel 3x3 stem: uniform keeps 0 of its 9 per row at 90%, the curves one
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(128, 4))
    calib = [torch.randn(32, 1, 6, 6, generator=torch.Generator().manual_seed(1))]
    rep = retention_prune(net, calib, 0.9, method="sparsegpt", allocation="curves", points=4)
    assert all(r["kept"] >= r["m"] for r in rep.layers)
    assert rep.allocation["uniform_error"] is None and sum(r["kept"] for r in rep.layers) <= 4 * 12


def test_allocation_is_the_knapsack_optimum_under_the_uniform_budget():
    shapes = {"a": (2, 3), "b": (2, 3)}    # at 1/3 sparsity 2 of 3 per row: a budget of 8 kept weights
    curves = {"a": (np.array([2, 4, 6]), np.array([9.0, 1.0, 0.0])), "b": (np.array([2, 4, 6]), np.array([3.0, 0.5, 0.0]))}
    sparsity_of, alloc = allocate_retention(curves, shapes, 1 / 3, "row")
    assert alloc.counts == {"a": 4, "b": 4} and alloc.error == 1.5      # the uniform split is the best here
    curves["b"] = (np.array([2, 4, 6]), np.array([3.0, 2.9, 0.0]))
    sparsity_of, alloc = allocate_retention(curves, shapes, 1 / 3, "row")
    assert alloc.counts == {"a": 6, "b": 2} and alloc.error == 3.0      # better than uniform's 1.0 + 2.9
    assert sparsity_of == {"a": 0.0, "b": pytest.approx(2 / 3)}
    _, alloc = allocate_retention(curves, shapes, 0.5, "row")           # 1 per row: only the smallest points fit
    assert alloc.counts == {"a": 2, "b": 2}


def test_curves_split_the_budget_and_the_masks_follow_it():
    data = _batches()
    uniform, curved = _tiny(), _tiny()
    rep_u = retention_prune(uniform, data, 0.6, method="sparsegpt", refit=True)
    rep_c = retention_prune(curved, data, 0.6, method="sparsegpt", refit=True, allocation="curves", points=8)
    a = rep_c.allocation
    assert rep_u.allocation is None and a["rule"] == "curves" and a["points"] == 8
    assert sum(r["kept"] for r in rep_c.layers) <= sum(r["kept"] for r in rep_u.layers)
    assert a["error"] >= a["lower_bound"] - 1e-12
    modules = dict(curved.named_modules())
    for r in rep_c.layers:
        m, n = r["m"], r["n"]
        kept = int(keep_mask(modules[r["name"]]).sum())
        assert kept == r["kept"] == a["counts"][r["name"]]
        assert (keep_mask(modules[r["name"]]).reshape(m, -1).sum(1) == kept // m).all()   # k per row
        assert a["sparsity"][r["name"]] == pytest.approx(1 - kept / (m * n))
    # on the curves, the split is never worse than the uniform split (one of its choices)
    uniform_error = sum(float(e[np.searchsorted(k, r["kept"])]) for r in rep_u.layers
                        for k, e in [a["curves"][r["name"]]])
    assert a["error"] <= uniform_error + 1e-12


def test_curves_parallel_equals_serial_and_sequential_works():
    data = _batches()
    one, two, seq = _tiny(), _tiny(), _tiny()
    r1 = retention_prune(one, data, 0.5, method="obc", refit=True, allocation="curves", points=4)
    r2 = retention_prune(two, data, 0.5, method="obc", refit=True, allocation="curves", points=4, n_jobs=2)
    assert r1.allocation["counts"] == r2.allocation["counts"]
    for a, b in zip(one.modules(), two.modules()):
        if hasattr(a, "parametrizations"):
            assert torch.equal(keep_mask(a), keep_mask(b))
    r3 = retention_prune(seq, data, 0.5, method="obc", refit=True, allocation="curves", points=4, sequential=True)
    assert r3.allocation["counts"] == r1.allocation["counts"]   # the curves come from the dense model


@pytest.mark.parametrize("kwargs, message", [
    (dict(allocation="greedy"), "allocation must be 'uniform' or 'curves'"),
    (dict(allocation="curves", method="retention-greedy"), "allocation='curves' .* compensated method"),
    (dict(allocation="curves", method="obc", points=1), "points must be"),
])
def test_bad_curve_arguments_are_clear_errors(kwargs, message):
    model = _tiny()
    with pytest.raises(InvalidInstanceError, match=message):
        retention_prune(model, _batches(), 0.5, **kwargs)
    assert not any(hasattr(m, "parametrizations") for m in model.modules())


def test_a_layer_left_without_weights_is_a_warning_naming_it():
    """conv has 2 x 3 x 3 = 18 inputs per row: at 95% uniform keeps 0 of them; the curves' split keeps some."""
    model = _tiny()
    with pytest.warns(RuntimeWarning, match=r"keeps no weight of layer\(s\) \['conv'"):
        rep = retention_prune(model, _batches(), 0.95, method="sparsegpt")
    assert next(r for r in rep.layers if r["name"] == "conv")["kept"] == 0
