"""Layer-parallel work through joblib: independent per-layer tasks (retention solves, compensated column
choices, calibration shards) run on a joblib backend, and each layer's seed comes from the global seed and
the layer's *name*, so the results never depend on the backend, the worker count or the order tasks finish.

Backends: ``"loky"`` (joblib's default, local processes), ``"threading"``, and the optional extras
``"dask"`` (``pip install "rcprune[dask]"``: dask.distributed's joblib backend; a ``Client`` the user made
is used as it is, else a local cluster of ``n_jobs`` one-thread workers is started for the call) and
``"ray"`` (``pip install "rcprune[ray]"``: ray.util.joblib; ``ray.init`` is called if no Ray runtime is up).
Workers limit their numba and BLAS threads (so ``n_jobs`` workers do not oversubscribe the cores), run
with progress bars off, and a task that raises or whose worker dies is reported by the layer's name.

>>> layer_seed(0, "layer1.0.conv1") == layer_seed(0, "layer1.0.conv1") != layer_seed(0, "layer1.0.conv2")
True
>>> map_layers(pow, [("a", (2, 3)), ("b", (3, 2))], n_jobs=1)
[8, 9]
"""
from __future__ import annotations

import contextlib
import importlib.util
import numbers
import os
import sys
import traceback
import warnings
import zlib
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from rcprune.validation import InvalidInstanceError

__all__ = ["BACKENDS", "EXTRAS", "LayerTaskError", "check_n_jobs", "check_backend", "layer_seed", "map_layers",
           "worker_threads", "limited_threads"]

BACKENDS = ("loky", "threading", "dask", "ray")
EXTRAS = {"dask": ("distributed", "dask"), "ray": ("ray", "ray")}   # backend: (module needed, rcprune extra)


class LayerTaskError(RuntimeError):
    """A layer's task raised (not with bad input) or its worker died; ``layer`` names it (or the layers that
    were in flight when a worker died)."""

    def __init__(self, message: str, layer):
        super().__init__(message)
        self.layer = layer


def check_n_jobs(n_jobs) -> int:
    """``n_jobs`` as joblib reads it: a positive worker count, or -1 for every core (-2 all but one, ...)."""
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise InvalidInstanceError(f"n_jobs must be a nonzero integer (1: serial, 2: two workers, -1: every core), "
                                   f"got {n_jobs!r}")
    return int(n_jobs)


def check_backend(backend) -> str:
    """One of :data:`BACKENDS` whose package is installed, or an error naming the choices or the extra."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInstanceError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend in EXTRAS:
        module, extra = EXTRAS[backend]
        if importlib.util.find_spec(module) is None:
            raise InvalidInstanceError(f"backend={backend!r} needs the {module} package: "
                                       f"pip install \"rcprune[{extra}]\"")
    return backend


def layer_seed(seed: int, name: str) -> int:
    """The seed of layer ``name`` under the global ``seed``: a hash of both, the same in every process and
    run (``np.random.SeedSequence([seed, crc32(name)])``), in [0, 2**31)."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0]
    return int(state) >> 1


def worker_threads(n_jobs: int, backend: str) -> int:
    """Threads per worker that keep ``n_jobs`` local workers within the cores (1 on remote backends,
    whose workers share hosts the parent cannot see)."""
    if backend in EXTRAS:
        return 1
    from joblib import effective_n_jobs

    return max(1, (os.cpu_count() or 1) // effective_n_jobs(n_jobs))


@contextlib.contextmanager
def limited_threads(threads: int | None, process_wide: bool = True):
    """numba, BLAS/OpenMP and (when imported) torch threads limited to ``threads`` inside the block; None:
    no limit. numba's and OpenMP's settings are per thread, BLAS's and torch's the process's: thread-pool
    workers set only the former (``process_wide=False``) and the parent limits the rest once around them."""
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if not process_wide:   # OpenMP's setting is per thread too
        try:
            with threadpool_limits(threads, user_api="openmp"):
                yield
        finally:
            numba.set_num_threads(before)
        return
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        numba.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


def _run_task(task: Callable, args: tuple, threads: int | None, process_wide: bool = True):
    """``("ok", task(*args))`` or ``("error", ...)``: a worker never raises, so the parent names the layer
    and picks the exception type whatever the backend does with exceptions."""
    try:
        with limited_threads(threads, process_wide):
            return "ok", task(*args)
    except Exception as exc:
        return "error", type(exc).__name__, str(exc), traceback.format_exc(), isinstance(exc, InvalidInstanceError)


def _raise_failure(name: str, outcome: tuple, what: str):
    _, kind, message, trace, invalid = outcome
    if invalid:
        raise InvalidInstanceError(f"{what} {name!r}: {message}")
    raise LayerTaskError(f"{what} {name!r} failed: {kind}: {message}\n--- traceback ---\n{trace}",
                         name)


@contextlib.contextmanager
def _backend_context(backend: str, n_jobs: int):
    """joblib's ``parallel_config`` for ``backend``; for dask, the user's Client or a temporary local
    cluster; for ray, the joblib registration (and ``ray.init`` by the backend when needed)."""
    from joblib import parallel_config

    if backend == "dask":
        from distributed import Client, LocalCluster, get_client

        try:
            get_client()
            made = None
        except ValueError:   # no Client: a local one for this call, one single-thread worker per job
            from joblib import effective_n_jobs

            import dask

            made = Client(dask.config.get("scheduler-address")) if dask.config.get("scheduler-address", None) else \
                Client(LocalCluster(n_workers=effective_n_jobs(n_jobs), threads_per_worker=1, processes=True,
                                    dashboard_address=None))
        try:
            with parallel_config(backend="dask"):
                yield
        finally:
            if made is not None:
                cluster = made.cluster
                made.close()
                if cluster is not None:
                    cluster.close()
        return
    if backend == "ray":
        from ray.util.joblib import register_ray

        register_ray()
    with parallel_config(backend=backend, n_jobs=n_jobs):
        yield


def map_layers(task: Callable, jobs: Sequence[tuple[str, tuple]], *, n_jobs: int = 1, backend: str = "loky",
               threads: int | None = None, progress: bool = False, desc: str | None = None,
               postfix: Callable | None = None, what: str = "layer", cost: Callable | None = None) -> list:
    """``[task(*args) for name, args in jobs]``, the tasks run by ``n_jobs`` joblib workers on ``backend``.

    Parameters
    ----------
    task : callable
        A module-level function (workers import it by name); ``args`` its positional arguments: give each
        job only its own layer's arrays (loky memory-maps large numpy arguments; workers must not write
        to them).
    jobs : sequence of (name, args)
        Named by layer: errors and the progress bar say the name.
    n_jobs : int
        1 runs every task here, in order, with the caller's threads (``threads=None``); otherwise joblib's
        meaning (-1: every core).
    backend : str
        One of :data:`BACKENDS`.
    threads : int, optional
        numba/BLAS threads per task; default (None): unlimited with ``n_jobs=1``, else
        :func:`worker_threads`.
    progress : bool
        One tqdm bar here, over the layers as they finish (``postfix(result)`` a dict for the bar, with
        the layer's name); the tasks run without bars.
    what : str
        What a job is, for the errors ("layer", "calibration shard").
    cost : callable, optional
        ``cost(args)`` estimates a job's work: the workers take the jobs costliest first (longest
        processing time first, so one large layer does not finish alone at the end); the results keep the
        order of ``jobs``.

    Returns
    -------
    list
        The results in the order of ``jobs``, whatever order they finished in.

    Raises
    ------
    InvalidInstanceError
        A task's own InvalidInstanceError, prefixed by its layer's name.
    LayerTaskError
        Any other exception of a task (the layer named, the worker's traceback quoted), or a worker that
        died (the layers in flight named).
    """
    n_jobs, backend = check_n_jobs(n_jobs), check_backend(backend)
    names = [name for name, _ in jobs]
    results: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, leave=False, disable=not progress)

    def record(i, outcome):
        if outcome[0] != "ok":
            _raise_failure(names[i], outcome, what)
        results[i] = outcome[1]
        bar.update(1)
        if postfix is not None:
            bar.set_postfix(layer=names[i], **postfix(outcome[1]))

    try:
        if n_jobs == 1:
            for i, (_, args) in enumerate(jobs):
                record(i, _run_task(task, args, threads))
            return results
        from joblib import Parallel, delayed

        threads = worker_threads(n_jobs, backend) if threads is None else threads
        done: set[int] = set()
        shared = backend == "threading"   # one process: its BLAS and torch limits set here, once
        with _backend_context(backend, n_jobs), limited_threads(threads if shared else None):
            # ray's joblib backend returns lists only: its bar moves once, at the end
            runner = Parallel(n_jobs=n_jobs, return_as="list" if backend == "ray" else "generator_unordered",
                              pre_dispatch="n_jobs", batch_size=1)
            order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i][1])) if cost else range(len(jobs))
            calls = (delayed(_indexed)(i, task, jobs[i][1], threads, not shared) for i in order)
            outcomes = runner(calls)
            try:
                for i, outcome in outcomes:
                    done.add(i)
                    record(i, outcome)
            except (InvalidInstanceError, LayerTaskError):
                with warnings.catch_warnings():   # joblib's note that the other layers' tasks were cancelled
                    warnings.simplefilter("ignore", UserWarning)
                    if hasattr(outcomes, "close"):
                        outcomes.close()
                raise
            except Exception as exc:   # a worker died (loky's TerminatedWorkerError, a lost dask worker, ...)
                from joblib import effective_n_jobs

                flight = [names[i] for i in order if i not in done][:max(1, effective_n_jobs(n_jobs))]
                raise LayerTaskError(f"a worker stopped while working on one of the {what}s {flight} "
                                     f"({type(exc).__name__}: {exc})", flight) from exc
        return results
    finally:
        bar.close()


def _indexed(i: int, task: Callable, args: tuple, threads: int | None, process_wide: bool):
    return i, _run_task(task, args, threads, process_wide)
