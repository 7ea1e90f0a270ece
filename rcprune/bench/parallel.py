"""Layer-parallel retention against the serial run, in the same process: a torchvision ResNet-50 with random
weights, H from a few random images, every selected conv/linear layer solved by ``method``, once serially
with the default threads, once serially with one thread, once on ``n_jobs`` joblib workers of one thread
each. Times are wall seconds of the whole :func:`rcprune.torch.retention_prune` call (the calibration pass
included, the same in every run) after a warm-up that compiles the kernels and starts the workers; the masks
must be identical. ``quick``: a small CIFAR ResNet-8 at 16 x 16, for tests.
"""
from __future__ import annotations

import os
import time

import torch

from rcprune.parallel import limited_threads, map_layers

__all__ = ["bench_parallel", "PARALLEL_COLUMNS", "DEFAULT_STAGES"]

DEFAULT_STAGES = ("conv1", "layer1", "layer2")   # 24 layers of 147 to 1152 inputs: seconds each on 2 cores
PARALLEL_COLUMNS = ["run", "n_jobs", "threads", "seconds", "vs_serial", "masks_identical"]


def _model_and_data(quick: bool, images: int, size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    if quick:
        from rcprune.torch.models import cifar_resnet

        model = cifar_resnet(depth=8, width=8, in_channels=3, num_classes=10, seed=seed).eval()
        return model, [torch.randn(4, 3, 16, 16, generator=g)]
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None).eval()
    batch = 8
    return model, [torch.randn(min(batch, images - i), 3, size, size, generator=g) for i in range(0, images, batch)]


def _warm(method: str, n_jobs: int, backend: str) -> None:
    """Start the workers and load the compiled kernels of ``method`` in each, and here (the pool is reused by
    the timed run)."""
    _warm_task(0, method)
    map_layers(_warm_task, [(str(i), (i, method)) for i in range(2 * n_jobs if n_jobs > 0 else 4)], n_jobs=n_jobs,
               backend=backend)


def _warm_task(i: int, method: str) -> int:
    import numpy as np

    from rcprune.retention.layer_task import solve_layer
    from rcprune.solve import RETENTION_OBJECTIVES

    objective = "masked" if "masked" in RETENTION_OBJECTIVES[method] else "compensated"
    w = np.random.default_rng(i).laplace(size=(4, 16))
    solve_layer("warm", w, np.eye(16), dict(sparsity=0.5, method=method, objective=objective))
    return i


def bench_parallel(*, quick: bool = False, n_jobs: int = 2, backend: str = "loky", method: str = "retention-greedy",
                   sparsity: float = 0.9, stages=DEFAULT_STAGES, images: int = 16, size: int = 64, seed: int = 0,
                   repeats: int = 1, log=print) -> dict:
    """``{"rows": [...], "layers": count, "load": os.getloadavg(), ...}``: one row per run (serial with the
    default threads, serial with one thread, parallel), the best wall seconds of ``repeats`` rounds (the
    runs interleaved in each round, so a load change hits them alike), the ratio to the serial run and
    whether the masks equal the serial run's."""
    from rcprune.torch.rcmask import keep_mask
    from rcprune.torch.retention import retention_layers, retention_prune

    dense, data = _model_and_data(quick, images, size, seed)
    names, _ = retention_layers(dense)
    if not quick:
        names = [n for n in names if n.split(".")[0] in stages]
    log(f"{len(names)} layers, {sum(len(b) for b in data)} calibration images; warming up")
    t = time.perf_counter()
    _warm(method, n_jobs, backend)
    warm = time.perf_counter() - t
    masks = {}
    plan = [("serial, default threads", 1, None), ("serial, 1 thread", 1, 1), (f"{backend}, n_jobs={n_jobs}", n_jobs, None)]
    runs = [{"run": run, "n_jobs": jobs, "threads": threads or "default", "seconds": float("inf"), "all_seconds": []}
            for run, jobs, threads in plan]
    for _ in range(repeats):
        for row, (run, jobs, threads) in zip(runs, plan):
            model = _copy(dense)
            t = time.perf_counter()
            with limited_threads(threads):
                rep = retention_prune(model, data, sparsity, method=method, layers=names, seed=seed, n_jobs=jobs,
                                      backend=backend)
            seconds = time.perf_counter() - t
            masks.setdefault(run, [keep_mask(model.get_submodule(n)).clone() for n in names])
            log(f"{run}: {seconds:.1f} s")
            row["all_seconds"].append(seconds)
            row["seconds"] = min(row["seconds"], seconds)
            row["error"] = rep.totals()["error"]
    serial = runs[0]
    for r in runs:
        r["vs_serial"] = serial["seconds"] / r["seconds"] if r["seconds"] > 0 else None
        r["masks_identical"] = all(torch.equal(a, b) for a, b in zip(masks[serial["run"]], masks[r["run"]]))
    return {"rows": runs, "layers": len(names), "method": method, "sparsity": sparsity, "warmup_seconds": warm,
            "load": os.getloadavg(), "cpus": os.cpu_count(), "model": "cifar_resnet-8 (quick)" if quick else
            f"torchvision resnet50, random weights, layers {', '.join(stages)}",
            "images": sum(len(b) for b in data), "size": 16 if quick else size, "repeats": repeats}


def _copy(model):
    import copy

    return copy.deepcopy(model)
