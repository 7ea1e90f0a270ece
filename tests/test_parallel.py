"""rcprune.parallel: per-layer seeds, the order of results, thread limits, and errors that name the layer."""
import os
import re
import zlib

import numpy as np
import pytest

from rcprune import InvalidInstanceError
from rcprune.parallel import LayerTaskError, check_backend, layer_seed, map_layers


def square(x):
    return x * x


def fails_on(name, bad):
    if name == bad:
        raise ValueError(f"boom in {name}")
    return name


def invalid(name):
    raise InvalidInstanceError("the hessian is not positive semi-definite")


def dies_on(name, bad):
    if name == bad:
        os._exit(3)   # the worker process ends without a word
    return name


def thread_counts(_):
    import numba
    from threadpoolctl import threadpool_info

    return numba.get_num_threads(), [p["num_threads"] for p in threadpool_info()]


def test_layer_seed_comes_from_the_seed_and_the_name_only():
    expected = int(np.random.SeedSequence([7, zlib.crc32(b"layer1.0.conv1")]).generate_state(1)[0]) >> 1
    assert layer_seed(7, "layer1.0.conv1") == expected
    seeds = {layer_seed(s, n) for s in (0, 1) for n in ("conv1", "conv2", "fc")}
    assert len(seeds) == 6 and all(0 <= s < 2 ** 31 for s in seeds)


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "loky"), (2, "threading"), (-1, "threading")])
def test_results_come_back_in_job_order(n_jobs, backend):
    jobs = [(f"layer{i}", (i,)) for i in range(7)]
    assert map_layers(square, jobs, n_jobs=n_jobs, backend=backend) == [i * i for i in range(7)]


def test_workers_run_with_limited_threads():
    counts = map_layers(thread_counts, [("a", (0,)), ("b", (1,))], n_jobs=2, backend="loky", threads=1)
    for numba_threads, pools in counts:
        assert numba_threads == 1 and all(t == 1 for t in pools)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True, None])
def test_n_jobs_must_be_a_nonzero_integer(n_jobs):
    with pytest.raises(InvalidInstanceError, match="n_jobs must be a nonzero integer"):
        map_layers(square, [("a", (1,))], n_jobs=n_jobs)


def test_unknown_backend_names_the_choices_and_a_missing_one_the_extra(monkeypatch):
    with pytest.raises(InvalidInstanceError, match="backend must be one of 'loky', 'threading', 'dask', 'ray'"):
        check_backend("spark")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("distributed", "ray")
                        else real(name, *a))
    with pytest.raises(InvalidInstanceError, match=re.escape('pip install "rcprune[dask]"')):
        check_backend("dask")
    with pytest.raises(InvalidInstanceError, match=re.escape('pip install "rcprune[ray]"')):
        map_layers(square, [("a", (1,))], n_jobs=2, backend="ray")


@pytest.mark.parametrize("n_jobs, backend", [(1, "loky"), (2, "loky"), (2, "threading")])
def test_a_task_that_raises_is_named_by_its_layer(n_jobs, backend):
    jobs = [(n, (n, "layer2.conv")) for n in ("conv1", "layer2.conv", "fc")]
    with pytest.raises(LayerTaskError, match=r"layer 'layer2.conv' failed: ValueError: boom") as info:
        map_layers(fails_on, jobs, n_jobs=n_jobs, backend=backend)
    assert info.value.layer == "layer2.conv"
    with pytest.raises(InvalidInstanceError, match=r"layer 'conv1': the hessian is not positive"):
        map_layers(invalid, [("conv1", ("conv1",))], n_jobs=n_jobs, backend=backend)


def test_a_worker_that_dies_names_the_layers_in_flight():
    jobs = [(n, (n, "b")) for n in ("a", "b", "c", "d")]
    with pytest.raises(LayerTaskError, match="a worker stopped while working on one of the layers") as info:
        map_layers(dies_on, jobs, n_jobs=2, backend="loky")
    # the dying layer is named among at most n_jobs layers (which others were in flight depends on timing:
    # once 'a' or 'c' is done, 'd' may be dispatched before the death of 'b' is seen)
    assert "b" in info.value.layer and len(info.value.layer) <= 2
    assert map_layers(square, [("a", (3,))], n_jobs=2) == [9]   # the pool recovers


def test_thread_workers_limit_numba_each_and_blas_once():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    counts = map_layers(thread_counts, [(str(i), (i,)) for i in range(4)], n_jobs=2, backend="threading", threads=1)
    assert all(numba_threads == 1 and all(t == 1 for t in pools) for numba_threads, pools in counts)
    assert [p["num_threads"] for p in threadpool_info()] == before   # restored after
