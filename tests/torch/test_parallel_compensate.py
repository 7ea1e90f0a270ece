"""Non-sequential compensation (rcprune.torch.compensate(sequential=False)): one statistics pass, layers
compensated independently and in parallel, identical to the serial run; prune's n_jobs/backend plumbing."""
import copy
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rcprune import solve  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, extract, prune  # noqa: E402
from rcprune.torch.compensate import compensate  # noqa: E402
from rcprune.torch.layer_statistics import layer_statistics  # noqa: E402
from rcprune.torch.pass_statistics import pass_statistics  # noqa: E402
from rcprune.torch.rcmask import keep_mask  # noqa: E402
from rcprune.torch.masking import restore  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402
from tests.torch.test_compensate import _lstsq_with_bias, _mlp  # noqa: E402


@pytest.fixture(scope="module")
def resnet():
    model, x, _ = calibrated_resnet()
    ext = extract(copy.deepcopy(model), x[:1], sparsity=0.6)
    return model, x, solve(ext.instance, method="network-greedy").solution


def test_one_pass_statistics_equal_the_per_layer_passes(resnet):
    model, x, sol = resnet
    masked = copy.deepcopy(model)
    ext = extract(masked, x[:1])
    apply(masked, sol, ext)
    dense = restore(copy.deepcopy(masked)).eval()
    mods, dmods = dict(masked.named_modules()), dict(dense.named_modules())
    entries = []
    for name, lm in ext.layers.items():
        w = dmods[lm.module].weight.detach().double().reshape(lm.weight_shape[0], -1)
        cols = np.flatnonzero(np.random.default_rng(len(entries)).random(w.shape[1]) < 0.7)
        entries.append((name, mods[lm.module], dmods[lm.module], w, cols))
    calib = [x[:20], x[20:]]
    together = pass_statistics(masked, dense, entries, calib)
    for name, module, dmodule, w, cols in entries:
        alone = layer_statistics(masked, dense, name, module, dmodule, w, cols, calib)
        for a, b in zip(together[name][:5], alone[:5]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(b).max())))
        assert together[name][5] == alone[5]


def test_every_layer_is_refit_to_the_masked_uncompensated_inputs():
    net, x = _mlp()
    dense = copy.deepcopy(net)
    ext = extract(net, x[:1])
    rows0, cols0 = np.array([1, 1, 0, 1, 1], bool), np.array([1, 1, 1, 0, 1, 0], bool)
    sol = NetworkSolution({"0": (rows0, cols0), "2": (np.ones(3, bool), np.ones(5, bool))})
    masked = copy.deepcopy(dense)
    apply(masked, sol, extract(masked, x[:1]))
    compensate(net, sol, [x[:48], x[48:]], extraction=ext, layer_method="refit", damping=0, batchnorm=False,
               sequential=False)
    with torch.no_grad():
        z = torch.relu(masked[0](x)).double().numpy()   # layer 2's input in the masked, *uncompensated* network
        y2 = dense(x).double().numpy()
        live = rows0
        v2, b2 = _lstsq_with_bias(z[:, live], y2)
        np.testing.assert_allclose(net[2].weight.double().numpy()[:, live], v2, atol=1e-5)
        np.testing.assert_allclose(net[2].bias.double().numpy(), b2, atol=1e-5)


def _compensated(model, x, sol, **kwargs):
    work = copy.deepcopy(model)
    ext = extract(work, x[:1])
    final, rep = compensate(work, sol, [x[:24], x[24:]], extraction=ext, sequential=False, seed=2, **kwargs)
    return work, final, rep


def test_parallel_compensation_equals_the_serial_one(resnet):
    model, x, sol = resnet
    serial = _compensated(model, x, sol, n_jobs=1)
    for backend in ("loky", "threading"):
        par = _compensated(model, x, sol, n_jobs=2, backend=backend)
        for (k, p), q in zip(serial[0].state_dict().items(), par[0].state_dict().values()):
            assert torch.equal(p, q), (backend, k)
        # the weights are equal bit for bit; the report's errors are sums a worker's BLAS (one thread under
        # loky) may add in another order, so they agree to rounding
        drop = lambda rep: [{k: v for k, v in r.items() if k != "seconds"} for r in rep.layers]   # noqa: E731
        for a, b in zip(drop(serial[2]), drop(par[2]), strict=True):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-12) if isinstance(a[k], float)
                                                else a[k] == b[k] for k in a), (a, b)
        assert serial[2].sequential is False
        assert all(np.array_equal(serial[1][n].cols, par[1][n].cols) for n, _ in serial[1].items())
    assert serial[2].medians()["error"] < serial[2].medians()["error_masked"]


def test_a_failing_layer_leaves_the_model_unmasked_and_as_it_was(resnet, monkeypatch):
    import importlib

    comp = importlib.import_module("rcprune.torch.compensate")   # (rcprune.torch.compensate is also the function)
    model, x, sol = resnet
    real = comp.compensate_layer

    def broken(name, *args):
        if name == "layer1.0.conv2":
            raise ArithmeticError("the refit diverged")
        return real(name, *args)

    monkeypatch.setattr(comp, "compensate_layer", broken)
    work = copy.deepcopy(model)
    ext = extract(work, x[:1])
    from rcprune.parallel import LayerTaskError

    with pytest.raises(LayerTaskError, match="layer 'layer1.0.conv2' failed: ArithmeticError"):
        compensate(work, sol, [x], extraction=ext, sequential=False, n_jobs=2, backend="threading")
    assert all(keep_mask(m) is None for m in work.modules())
    for (k, p), q in zip(work.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), k                  # weights and BatchNorm statistics as they were


def test_prune_passes_n_jobs_and_backend_to_the_compensation(resnet):
    model, x, _ = resnet
    a, rep = prune(model, x[:1], sparsity=0.7, compact=False, calibration=[x], sequential=False, seed=1)
    b, _ = prune(model, x[:1], sparsity=0.7, compact=False, calibration=[x], sequential=False, n_jobs=2, seed=1)
    assert rep.compensation.sequential is False
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    for m in model.modules():
        assert keep_mask(m) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"n_jobs": 2}, "n_jobs=2 parallelizes the compensation of the layers: it needs calibration= and sequential=False"),
    ({"n_jobs": 2, "calibration": "x"}, "sequential=False"),
    ({"n_jobs": 0}, "n_jobs must be a nonzero integer"),
    ({"backend": "celery", "calibration": "x", "sequential": False}, "backend must be one of"),
])
def test_bad_parallel_arguments_of_prune(resnet, kwargs, message):
    model, x, _ = resnet
    if kwargs.get("calibration") == "x":
        kwargs["calibration"] = [x]
    with pytest.raises(InvalidInstanceError, match=re.escape(message)):
        prune(model, x[:1], sparsity=0.5, **kwargs)


def test_sequential_compensation_refuses_n_jobs(resnet):
    model, x, sol = resnet
    work = copy.deepcopy(model)
    with pytest.raises(InvalidInstanceError, match="sequential=True takes each layer's statistics"):
        compensate(work, sol, [x], extraction=extract(work, x[:1]), n_jobs=2)
