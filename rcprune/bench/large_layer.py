"""Weight selection on one large layer (ResNet-50's 512 x 4608 by default) under the compensated objective:
every method against SparseGPT (Frantar & Alistarh 2023, the fast anchor at this size; OBC takes hours) in
the same run, error and time ratios. H = X X^T / N of synthetic inputs whose neighbouring features are
correlated (as an im2col patch's are), Laplace weights, 1% damping. Time is each ``rcprune.solve`` call's
wall time, the result's exact evaluation included; building the instance (validating H) is reported apart.
"""
from __future__ import annotations

import time

import numpy as np

from rcprune.retention.model import RetentionInstance

__all__ = ["bench_large_layer", "synthetic_layer", "LARGE_LAYER_COLUMNS", "DEFAULT_METHODS", "ANCHOR"]

ANCHOR = "sparsegpt"
DEFAULT_METHODS = ("sparsegpt", "compensated-tabu")   # compensated-annealing: over 10 minutes at 512 x 4608
LARGE_LAYER_COLUMNS = ["m", "n", "sparsity", "method", "error", "vs_anchor", "seconds", "time_vs_anchor", "start",
                       "candidates", "status"]


def synthetic_layer(m: int, n: int, *, samples: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(W, H)``: Laplace weights (m x n) and the Gram matrix of ``samples`` (default 2 n) Gaussian inputs in
    which every odd feature leans on the even one before it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, samples or 2 * n))
    x[1::2] += 0.5 * x[::2]
    return rng.laplace(size=(m, n)), x @ x.T / x.shape[1]


def bench_large_layer(m: int = 512, n: int = 4608, *, sparsity: float = 0.9, methods=DEFAULT_METHODS, seed: int = 0,
                      time_limit: float | None = None, log=print) -> list[dict]:
    """One row per method: error after the refit, error / SparseGPT's, seconds, seconds / SparseGPT's, and
    the local searches' start and candidate count; the instance's build time in ``build_seconds``."""
    from rcprune.solve import solve

    if ANCHOR not in methods:
        raise ValueError(f"methods must include the anchor {ANCHOR!r}")
    w, h = synthetic_layer(m, n, seed=seed)
    solve(RetentionInstance(w[:2, :64], h[:64, :64], sparsity=sparsity), method="compensated-annealing",
          proposals=10)     # compile the kernels outside the timings
    t0 = time.perf_counter()
    inst = RetentionInstance(w, h, sparsity=sparsity, name=f"synthetic {m}x{n}")
    build = time.perf_counter() - t0
    log(f"instance {m} x {n} at {sparsity:g}: built in {build:.1f} s")
    found = {}
    for method in methods:
        t0 = time.perf_counter()
        res = solve(inst, method=method, seed=seed, time_limit=time_limit)
        found[method] = (res, time.perf_counter() - t0)
        log(f"{method}: error {res.cost:.6g}, {found[method][1]:.1f} s")
    anchor, anchor_time = found[ANCHOR]
    return [{"m": m, "n": n, "sparsity": sparsity, "method": method, "error": res.cost,
             "vs_anchor": res.cost / anchor.cost if anchor.cost > 0 else 1.0, "seconds": seconds,
             "time_vs_anchor": seconds / anchor_time if anchor_time > 0 else None,
             "start": res.info.get("start", "-"), "candidates": res.info.get("candidates", "-"),
             "status": res.status, "build_seconds": build}
            for method, (res, seconds) in found.items()]
