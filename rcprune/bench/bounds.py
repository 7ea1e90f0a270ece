"""Certified-gap benchmark: best solver cost against the best lower bound on library instances.

For each instance (and sparsity), run the solvers, take the best cost, compute :func:`lower_bound`
(``method="best"``) with that incumbent and report ``gap = (cost - bound) / cost``. Timings are wall-clock
on whatever machine runs it (noisy on shared machines).
"""
from __future__ import annotations

import time

from rcprune import library
from rcprune.solve import solve

from rcprune.certify import lower_bound

__all__ = ["REAL_LAYER_INSTANCES", "gap_benchmark"]

REAL_LAYER_INSTANCES = ("laplace-64x576", "gaussian-64x576", "laplace-128x1152", "laplace-256x2304",
                        "laplace-512x4608", "laplace-1000x512")


def gap_benchmark(names=REAL_LAYER_INSTANCES, sparsities=(0.9, 0.93), solvers=("greedy-row-column",
                  "greedy-column-row"), time_limit: float = 5.0) -> list[dict]:
    """One row per (instance, sparsity): best solver, its cost, the bound, its method, gap and times, and
    ``best_known``: the bound's final incumbent (exact per-shape solves may beat the solvers)."""
    rows = []
    for name in names:
        base = library.get(name)
        for sp in sparsities:
            inst = base.replace(sparsity=sp)
            t0 = time.perf_counter()
            results = [solve(inst, method=m, time_limit=time_limit) for m in solvers]
            solve_s = time.perf_counter() - t0
            best = min(results, key=lambda r: r.cost)
            b = lower_bound(inst, "best", time_limit=time_limit, incumbent=best)
            cheap = lower_bound(inst, "spectral")
            rows.append({"instance": name, "sparsity": sp, "solver": best.method, "cost": best.cost,
                         "lower_bound": b.bound, "gap": b.gap(best.cost), "spectral_gap": cheap.gap(best.cost),
                         "topk_gap": lower_bound(inst, "topk").gap(best.cost), "bound_s": b.runtime,
                         "spectral_s": cheap.runtime, "solve_s": solve_s,
                         "best_known": b.info.get("incumbent", best.cost)})
    return rows
