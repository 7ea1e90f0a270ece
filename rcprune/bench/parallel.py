"""Layer-parallel retention against the serial run, in the same process: a torchvision ResNet-50 with random
weights, H from a few random images (one calibration pass, timed apart), every selected conv/linear layer
solved by ``method`` (the per-layer jobs :func:`rcprune.torch.retention_prune` runs, through the same
:func:`rcprune.parallel.map_layers`), once serially with the default threads, once serially with one
thread, once on ``n_jobs`` joblib workers. Times are wall seconds of the layer solves (what ``n_jobs``
parallelizes) after a warm-up that compiles the kernels and starts the workers; the masks must be
identical. ``quick``: a small CIFAR ResNet-8 at 16 x 16, for tests.
"""
from __future__ import annotations

import os
import time

import torch

from rcprune.parallel import limited_threads, map_layers

__all__ = ["bench_parallel", "PARALLEL_COLUMNS", "DEFAULT_STAGES"]

DEFAULT_STAGES = ("conv1", "layer1")   # 11 layers of 64 to 576 inputs: 0.1 to 9 s each (compensated-tabu, 1 thread)
PARALLEL_COLUMNS = ["run", "n_jobs", "threads", "seconds", "all_seconds", "vs_serial", "cpu_seconds", "cores_used",
                    "masks_identical"]


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

    from rcprune.retention_task import solve_layer
    from rcprune.solve import RETENTION_OBJECTIVES

    objective = "masked" if "masked" in RETENTION_OBJECTIVES[method] else "compensated"
    w = np.random.default_rng(i).laplace(size=(4, 16))
    solve_layer("warm", w, np.eye(16), dict(sparsity=0.5, method=method, objective=objective))
    return i


def _cpu_timed(*args):
    """:func:`solve_layer` and the CPU seconds its process spent on it (all its threads)."""
    from rcprune.retention_task import solve_layer

    t = time.process_time()
    out = solve_layer(*args)
    return out, time.process_time() - t


def bench_parallel(*, quick: bool = False, n_jobs: int = 2, backend: str = "loky", method: str = "compensated-tabu",
                   sparsity: float = 0.9, stages=DEFAULT_STAGES, images: int = 16, size: int = 64, seed: int = 0,
                   repeats: int = 1, log=print) -> dict:
    """``{"rows": [...], "layers": count, "load": os.getloadavg(), ...}``: one row per run (serial with the
    default threads, serial with one thread, parallel), the best wall seconds of ``repeats`` rounds (the
    runs interleaved in each round, so a load change hits them alike), the ratio to the serial run and
    whether the masks equal the serial run's; ``cpu_seconds`` (the layer solves' CPU time, all processes and
    threads, in the best round) over the wall seconds is ``cores_used``: how much of the machine the run got
    (on a machine shared with other work, the kernel's fair share caps it, whatever ``n_jobs``)."""
    from rcprune.solve import RETENTION_OBJECTIVES
    from rcprune.torch.hessians import layer_hessians
    from rcprune.torch.retention import layer_jobs, retention_layers

    objective = "masked" if "masked" in RETENTION_OBJECTIVES[method] else "compensated"
    dense, data = _model_and_data(quick, images, size, seed)
    names, _ = retention_layers(dense)
    if not quick:
        names = [n for n in names if n.split(".")[0] in stages]
    log(f"{len(names)} layers, {sum(len(b) for b in data)} calibration images; warming up")
    t = time.perf_counter()
    _warm(method, n_jobs, backend)
    warm = time.perf_counter() - t
    t = time.perf_counter()
    hessians, _ = layer_hessians(dense, data, names)
    calibration = time.perf_counter() - t
    jobs = layer_jobs(dict(dense.named_modules()), names, hessians, dict(sparsity=sparsity, method=method,
                                                                           objective=objective), seed)
    masks = {}
    plan = [("serial, default threads", 1, None), ("serial, 1 thread", 1, 1),
            (f"{backend}, n_jobs={n_jobs}", n_jobs, None)]
    runs = [{"run": run, "n_jobs": jobs_, "threads": threads or "default", "seconds": float("inf"), "all_seconds": []}
            for run, jobs_, threads in plan]
    for _ in range(repeats):
        for row, (run, jobs_, threads) in zip(runs, plan):
            t = time.perf_counter()
            with limited_threads(threads):
                timed = map_layers(_cpu_timed, jobs, n_jobs=jobs_, backend=backend,
                                   cost=lambda args: args[1].shape[0] * args[1].shape[1] ** 2)
            seconds = time.perf_counter() - t
            solved = [out for out, _ in timed]
            if seconds <= row["seconds"]:
                row["cpu_seconds"] = sum(c for _, c in timed)
                row["cores_used"] = row["cpu_seconds"] / seconds
            masks.setdefault(run, [mask for mask, _, _ in solved])
            log(f"{run}: {seconds:.1f} s")
            row["all_seconds"].append(round(seconds, 2))
            row["seconds"] = min(row["seconds"], seconds)
            row["error"] = sum(r["error"] for _, _, r in solved)
    serial = runs[0]
    for r in runs:
        r["vs_serial"] = serial["seconds"] / r["seconds"] if r["seconds"] > 0 else None
        r["masks_identical"] = all((a == b).all() for a, b in zip(masks[serial["run"]], masks[r["run"]]))
    return {"rows": runs, "layers": len(names), "method": method, "sparsity": sparsity, "warmup_seconds": warm,
            "calibration_seconds": calibration,
            "layer_seconds": {n: r["runtime"] for n, (_, _, r) in zip(names, solved)},
            "load": os.getloadavg(), "cpus": os.cpu_count(), "model": "cifar_resnet-8 (quick)" if quick else
            f"torchvision resnet50, random weights, layers {', '.join(stages)}",
            "images": sum(len(b) for b in data), "size": 16 if quick else size, "repeats": repeats}

