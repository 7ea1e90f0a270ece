"""Layer-parallel retention and sharded calibration: the same masks as the serial run, errors that name
the layer and leave the model unmasked, quiet workers, one progress bar."""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.parallel import LayerTaskError, layer_seed  # noqa: E402
from rcprune.torch.hessians import HessianSums, layer_hessians  # noqa: E402
from rcprune.torch.rcmask import keep_mask, rc_mask  # noqa: E402
from rcprune.torch.retention import retention_prune  # noqa: E402
from tests.torch.test_retention import _batches, _tiny  # noqa: E402

LAYERS = ("conv", "conv2", "fc")


def _pruned(**kwargs):
    model = _tiny()
    rep = retention_prune(model, _batches(2), 0.7, **kwargs)
    return model, rep


def _same(a, b):
    (ma, ra), (mb, rb) = a, b
    for name in LAYERS:
        assert torch.equal(keep_mask(ma.get_submodule(name)), keep_mask(mb.get_submodule(name))), name
        assert torch.equal(rc_mask(ma.get_submodule(name), "weight").value,
                           rc_mask(mb.get_submodule(name), "weight").value), name
    drop = lambda rows: [{k: v for k, v in r.items() if k != "runtime"} for r in rows]   # noqa: E731
    assert drop(ra.layers) == drop(rb.layers)


@pytest.mark.parametrize("method, refit", [("retention-annealing", False), ("compensated-tabu", True)])
def test_parallel_masks_and_refits_equal_the_serial_run(method, refit):
    serial = _pruned(method=method, refit=refit, seed=5)
    _same(serial, _pruned(method=method, refit=refit, seed=5, n_jobs=2, backend="loky"))
    _same(serial, _pruned(method=method, refit=refit, seed=5, n_jobs=2, backend="threading"))


def test_each_job_carries_only_its_own_layers_weights_and_h(monkeypatch):
    import rcprune.torch.retention as retention

    seen = []
    real = retention.map_layers

    def spy(task, jobs, **kwargs):
        seen.extend(jobs)
        return real(task, jobs, **kwargs)

    monkeypatch.setattr(retention, "map_layers", spy)
    model = _tiny()
    retention_prune(model, _batches(2), 0.7, method="retention-greedy", n_jobs=2, backend="threading")
    assert [name for name, _ in seen] == list(LAYERS)
    for name, (label, w, h, settings) in seen:
        n = model.get_submodule(name).weight[0].numel()
        assert label == name and w.shape == (model.get_submodule(name).weight.shape[0], n) and h.shape == (n, n)
        assert all(not isinstance(v, (dict, torch.nn.Module)) for k, v in settings.items() if k != "options")


def test_each_layer_seed_comes_from_its_name_not_its_position(monkeypatch):
    import rcprune.retention_task as task

    seen = {}
    real = task.solve_layer

    def spy(name, weights, hessian, settings, *rest):
        seen[name] = settings["seed"]
        return real(name, weights, hessian, settings, *rest)

    monkeypatch.setattr("rcprune.torch.retention.solve_layer", spy)
    whole, _ = _pruned(method="retention-annealing", seed=4)
    assert seen == {n: layer_seed(4, n) for n in LAYERS}
    alone = _tiny()
    retention_prune(alone, _batches(2), 0.7, method="retention-annealing", seed=4, layers=["conv2"])
    assert torch.equal(keep_mask(alone.conv2), keep_mask(whole.conv2))   # the same H, the same seed


def _break_layer(monkeypatch, layer: str) -> None:
    """The solve of ``layer`` raises; the others run as they are."""
    import rcprune.retention_task as task

    def broken(name, *args):
        if name == layer:
            raise FloatingPointError("the kernel overflowed")
        return task.solve_layer(name, *args)

    monkeypatch.setattr("rcprune.torch.retention.solve_layer", broken)


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "threading")])
def test_a_failing_layer_is_named_and_the_model_stays_unmasked(monkeypatch, n_jobs, backend):
    _break_layer(monkeypatch, "conv2")
    model = _tiny()
    with pytest.raises(LayerTaskError, match="layer 'conv2' failed: FloatingPointError"):
        retention_prune(model, _batches(2), 0.7, method="retention-greedy", n_jobs=n_jobs, backend=backend)
    assert all(keep_mask(model.get_submodule(n)) is None for n in LAYERS)


def test_a_failing_layer_of_a_sequential_run_unmasks_the_layers_before_it(monkeypatch):
    _break_layer(monkeypatch, "fc")
    model = _tiny()
    with pytest.raises(LayerTaskError, match="layer 'fc' failed: FloatingPointError"):
        retention_prune(model, _batches(2), 0.7, method="retention-greedy", sequential=True, batchnorm=False)
    assert all(keep_mask(model.get_submodule(n)) is None for n in LAYERS)


def test_a_bad_layer_in_a_worker_is_an_invalid_instance_naming_it():
    model = _tiny()
    with pytest.raises(InvalidInstanceError, match=r"layer '(conv|conv2|fc)': .*unknown option"):
        retention_prune(model, _batches(1), 0.7, method="retention-greedy", n_jobs=2, no_such_option=3)
    assert all(keep_mask(model.get_submodule(n)) is None for n in LAYERS)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_jobs": 0}, "n_jobs must be a nonzero integer"),
    ({"n_jobs": 2.5}, "n_jobs must be a nonzero integer"),
    ({"backend": "mpi"}, "backend must be one of 'loky', 'threading', 'dask', 'ray'"),
    ({"n_jobs": 2, "sequential": True}, "sequential=True takes each layer's H from the network"),
    ({"shards": [_batches(1)], "sequential": True}, "shards= is for the one-pass calibration"),
])
def test_bad_parallel_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(InvalidInstanceError, match=re.escape(message)):
        retention_prune(_tiny(), _batches(1), 0.7, method="magnitude", **kwargs)


def test_progress_false_is_silent_and_true_is_one_bar_over_the_layers(capfd):
    _pruned(method="retention-greedy", n_jobs=2, progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    _pruned(method="retention-greedy", n_jobs=2, progress=True)
    err = capfd.readouterr().err
    assert "retention-greedy layers" in err and "layer=" in err and "error=" in err
    assert "calibration" in err and "inputs=" in err   # the calibration pass: how many inputs so far


def test_sharded_hessians_equal_the_single_pass():
    batches = _batches(5)
    whole, counts = layer_hessians(_tiny(), batches)
    model = _tiny()
    for n_jobs in (1, 2):
        split, split_counts = layer_hessians(model, shards=[batches[:2], batches[2:3], batches[3:]], n_jobs=n_jobs)
        assert split_counts == counts
        for name in LAYERS:
            np.testing.assert_allclose(split[name], whole[name], rtol=1e-10, atol=0)
    diag, _ = layer_hessians(model, shards=[batches[:1], batches[1:]], diagonal=True, n_jobs=2)
    np.testing.assert_allclose(diag["fc"], np.diag(whole["fc"]), rtol=1e-10)
    # the shards' sums merge by addition and divide once
    from rcprune.torch.hessians import hessian_sums

    a, b = (hessian_sums(model, part, list(LAYERS)) for part in (batches[:2], batches[2:]))
    merged, _ = (a + b).hessians()
    np.testing.assert_allclose(merged["conv"], whole["conv"], rtol=1e-10)
    sharded = retention_prune(_tiny(), None, 0.7, method="retention-greedy", shards=[batches[:2], batches[2:]],
                              n_jobs=2)
    one = retention_prune(_tiny(), batches, 0.7, method="retention-greedy")
    assert [r["error"] for r in sharded.layers] == pytest.approx([r["error"] for r in one.layers], rel=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give calibration_loader or shards="),
    ({"shards": []}, "shards must be a non-empty list"),
    ({"shards": [[]]}, "no calibration input reached layer(s)"),
    ({"calibration_loader": _batches(1), "n_jobs": 2}, "needs shards="),
])
def test_bad_shards_are_clear_errors(kwargs, message):
    with pytest.raises(InvalidInstanceError, match=re.escape(message)):
        layer_hessians(_tiny(), **kwargs)
    with pytest.raises(InvalidInstanceError, match="same layers"):
        HessianSums({"a": np.zeros(1)}, {"a": 1}) + HessianSums({"b": np.zeros(1)}, {"b": 1})


def test_dask_backend_with_the_users_client_and_without():
    distributed = pytest.importorskip("distributed")
    serial = _pruned(method="retention-annealing", seed=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        _same(serial, _pruned(method="retention-annealing", seed=2, n_jobs=-1, backend="dask"))
        assert client.status == "running"   # the user's client is used as it is, not closed
        whole, _ = layer_hessians(_tiny(), _batches(4))
        split, _ = layer_hessians(_tiny(), shards=[_batches(4)[:2], _batches(4)[2:]], n_jobs=2, backend="dask")
        np.testing.assert_allclose(split["conv2"], whole["conv2"], rtol=1e-10)
    _same(serial, _pruned(method="retention-annealing", seed=2, n_jobs=2, backend="dask"))   # a temporary cluster
    with pytest.raises(ValueError):
        distributed.get_client()   # and it is gone


def test_ray_backend():
    ray = pytest.importorskip("ray")
    serial = _pruned(method="retention-greedy", seed=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _same(serial, _pruned(method="retention-greedy", seed=1, n_jobs=2, backend="ray"))
    finally:
        ray.shutdown()


def test_bench_parallel_quick_from_the_cli(capsys):
    from rcprune.cli import main

    assert main(["bench", "parallel", "--quick", "--backend", "threading"]) == 0
    out = capsys.readouterr().out
    assert "serial, 1 thread" in out and "threading, n_jobs=2" in out and "masks identical: True" in out
    assert main(["bench", "parallel", "--quick", "--backend", "spark"]) == 2
    assert "backend must be one of" in capsys.readouterr().err
