"""OBC: Optimal Brain Compression's exact OBS elimination per row (Frantar & Alistarh 2022), the anchor for
weight selection under the compensated objective.

Each row starts with every weight kept, its refit v = w and A = H^-1, and repeatedly drops the weight p
of least error increase v_p^2 / a_p, refitting the others (v -= (v_p / a_p) A_:p) and downdating A
(A -= A_:p A_p: / a_p) over the weights still kept. Per-row budgets stop each row at k; a layer budget
runs every row to the end, records each row's error after every removal and splits the budget over
the rows by dynamic programming on those curves (:func:`rcprune.solvers.retention.exact.split_budget`).
"""
from __future__ import annotations

import numpy as np
from numba import prange
from tqdm.auto import tqdm

from rcprune.jit import jit
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask

from rcprune.solvers import check_objective
from rcprune.solvers.retention.exact import split_budget

__all__ = ["obc", "obc_mask", "eliminate"]

BLOCK_WORK = 2e9   # about n^3 / 3 multiply-adds per row: rows per block between time-limit checks


@jit(parallel=True, nogil=True)
def eliminate(weights, inverse, rows, stop, order, increments):
    """For each row i of ``rows``, OBS elimination from all weights down to ``stop`` kept: ``order[i, t]``
    is the t-th weight removed, ``increments[i, t]`` its error increase. O(n^3 / 3) per row (n^2 memory)."""
    n = weights.shape[1]
    for t in prange(rows.shape[0]):
        i = rows[t]
        a = inverse.copy()
        v = weights[i].copy()
        alive = np.arange(n)
        count = n
        for step in range(n - stop):
            best, bp = np.inf, -1
            for u in range(count):
                p = alive[u]
                score = v[p] * v[p] / a[p, p]
                if score < best:
                    best, bp = score, u
            p = alive[bp]
            order[i, step], increments[i, step] = p, best
            alive[bp] = alive[count - 1]
            count -= 1
            app = a[p, p]
            f = v[p] / app
            for u in range(count):
                r = alive[u]
                v[r] -= f * a[r, p]
            v[p] = 0.0
            for u in range(count):
                r = alive[u]
                arp = a[r, p] / app
                if arp != 0.0:
                    for s in range(count):
                        c = alive[s]
                        a[r, c] -= arp * a[p, c]


def obc_mask(instance: RetentionInstance, *, clock: Stopwatch | None = None, progress: bool = False):
    """OBC's keep-mask and whether the clock ran out (row budget: rows not reached keep the magnitude mask;
    a layer budget then falls back to magnitude entirely)."""
    check_objective(instance, "obc")
    clock = clock or Stopwatch(None)
    w, m, n = instance.weights, instance.m, instance.n
    inverse = np.linalg.inv(instance.hessian)
    stop = instance.k if instance.scope == "row" else 0
    order = np.zeros((m, n), dtype=np.int64)
    increments = np.zeros((m, n))
    block = int(max(1, min(64, BLOCK_WORK // max(n, 1) ** 3)))
    bar = tqdm(total=m, desc="obc rows", disable=not progress, leave=False)
    for lo in range(0, m, block):
        if clock.expired():
            bar.close()
            keep = magnitude_mask(instance)
            if instance.scope == "row":
                for i in range(lo):
                    keep[i] = True
                    keep[i, order[i, :n - stop]] = False
            return keep, True
        rows = np.arange(lo, min(m, lo + block), dtype=np.int64)
        eliminate(w, inverse, rows, stop, order, increments)
        bar.update(rows.size)
    bar.close()
    if instance.scope == "row":
        counts = np.full(m, instance.k)
    else:
        # curve[i, c]: the row's error with c weights left (n - c removed), a running sum of increments
        curve = np.concatenate([np.zeros((m, 1)), np.cumsum(increments, axis=1)], axis=1)[:, ::-1]
        counts = split_budget(np.ascontiguousarray(curve), instance.k)[1]
    keep = np.ones((m, n), dtype=bool)
    for i in range(m):
        keep[i, order[i, :n - counts[i]]] = False
    return keep, False


def obc(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
        progress: bool = False) -> SolveResult:
    """OBC (exact OBS per row): greedy backward elimination on the compensated objective.

    Each step is exact (the error increase of dropping p with the others refit is v_p^2 / [H_S^-1]_pp),
    the sequence is greedy: no approximation guarantee (the objective is not supermodular), exact when
    H is diagonal. O(m n^3 / 3) time (rows in parallel), O(n^2) memory per thread; the layer-budget split
    adds O(m K n).

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = obc(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0))   # 0.8 copies 1.0's input
    >>> res.solution.mask.tolist(), round(res.cost, 4), round(res.evaluation.magnitude_cost, 4)
    ([[True, False, True]], 0.1216, 0.49)
    """
    clock = Stopwatch(time_limit)
    keep, timed_out = obc_mask(instance, clock=clock, progress=progress)
    return make_result(instance, RetentionSolution(keep), method="obc", runtime=clock.elapsed(),
                       iterations=instance.m * instance.n - instance.total_kept, seed=seed, timed_out=timed_out)
