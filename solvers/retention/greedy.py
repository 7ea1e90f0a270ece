"""Greedy backward elimination for small-weight retention.

Start with every weight kept (or the 2k largest by magnitude) and prune, one at a time, the weight
whose removal increases the reconstruction error least, until the budget is met. The maintained
g = H d makes every candidate's increase O(1) and each removal O(n).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from rcprune.retention import kernels as rk
from rcprune.jit import jit
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask
from rcprune.validation import InvalidInstanceError

from rcprune.solvers import check_objective

__all__ = ["retention_greedy", "greedy_mask"]

STARTS = ("full", "magnitude")
ROW_BLOCK = 64          # rows per parallel block between time-limit checks
LAYER_STEPS = 1 << 14   # removals per call between time-limit checks (layer scope)


@jit(parallel=True, nogil=True)
def _greedy_rows(weights, h, keep, rows, k):
    """Prune rows ``rows`` of ``keep`` in place down to k kept each (rows in parallel)."""
    n = weights.shape[1]
    for t in prange(rows.shape[0]):
        i = rows[t]
        w, kp = weights[i], keep[i]
        g = rk.pruned_gradient(w, h, kp)
        count = 0
        for j in range(n):
            count += kp[j]
        while count > k:
            best, bj = np.inf, -1
            for j in range(n):
                if kp[j]:
                    d = rk.removal_delta(w, h, g, j)
                    if d < best:
                        best, bj = d, j
            rk.apply_removal(w, h, g, kp, bj)
            count -= 1


@jit(nogil=True)
def _row_best(w, h, g, kp, best_delta, best_j, i):
    best, bj = np.inf, -1
    for j in range(w.shape[0]):
        if kp[j]:
            d = rk.removal_delta(w, h, g, j)
            if d < best:
                best, bj = d, j
    best_delta[i], best_j[i] = best, bj


@jit(nogil=True)
def _greedy_layer_init(weights, h, keep, grads, best_delta, best_j):
    for i in range(weights.shape[0]):
        grads[i] = rk.pruned_gradient(weights[i], h, keep[i])
        _row_best(weights[i], h, grads[i], keep[i], best_delta, best_j, i)


@jit(nogil=True)
def _greedy_layer_steps(weights, h, keep, grads, best_delta, best_j, steps):
    """Up to ``steps`` global removals: the cheapest over all rows; only that row's candidates change."""
    for _ in range(steps):
        i = np.argmin(best_delta)
        rk.apply_removal(weights[i], h, grads[i], keep[i], best_j[i])
        _row_best(weights[i], h, grads[i], keep[i], best_delta, best_j, i)


def greedy_mask(instance: RetentionInstance, *, start: str = "full", clock: Stopwatch | None = None):
    """The greedy keep-mask and whether the clock ran out (remaining rows then keep the magnitude mask)."""
    if start not in STARTS:
        raise InvalidInstanceError(f"start must be one of {STARTS}, got {start!r}")
    w, h = instance.weights, instance.hessian
    m, n = instance.shape
    clock = clock or Stopwatch(None)
    if start == "full":
        keep = np.ones((m, n), dtype=bool)
    else:
        pool = RetentionInstance(w, h, k=min(instance.total_kept if instance.scope == "layer" else n,
                                             2 * instance.k), scope=instance.scope,
                                 objective="masked", damping=0.0)
        keep = magnitude_mask(pool)
    if instance.scope == "row":
        fallback = magnitude_mask(instance)
        for lo in range(0, m, ROW_BLOCK):
            if clock.expired():
                keep[lo:] = fallback[lo:]
                return keep, True
            _greedy_rows(w, h, keep, np.arange(lo, min(m, lo + ROW_BLOCK), dtype=np.int64), instance.k)
        return keep, False
    grads = np.zeros((m, n))
    best_delta, best_j = np.empty(m), np.empty(m, dtype=np.int64)
    _greedy_layer_init(w, h, keep, grads, best_delta, best_j)
    remaining = int(keep.sum()) - instance.k
    while remaining > 0:
        if clock.expired():
            return magnitude_mask(instance), True
        steps = min(remaining, LAYER_STEPS)
        _greedy_layer_steps(w, h, keep, grads, best_delta, best_j, steps)
        remaining -= steps
    return keep, False


def retention_greedy(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                     start: str = "full") -> SolveResult:
    """Greedy backward elimination: prune the weight of least error increase until k remain.

    No approximation guarantee (E is a non-submodular quadratic); exact when H is diagonal, in particular
    magnitude-optimal for H = c I.

    Parameters
    ----------
    instance : RetentionInstance
    start : {"full", "magnitude"}
        Eliminate from all weights (O(m n (n - k))) or from the 2k largest by magnitude (O(m n k)).

    Notes
    -----
    Row scope: rows are independent and run in parallel; each removal scans the kept weights of the
    row (O(n)) and updates g (O(n)). Layer scope: the cheapest removal over all rows, with the best
    candidate of each row cached, so each step costs O(n + m). A time limit stops between blocks of
    rows (the rest keep the magnitude mask) or, in layer scope, falls back to magnitude.

    >>> import rcprune
    >>> H = [[1.0, -0.9, -0.9], [-0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]
    >>> res = retention_greedy(rcprune.RetentionInstance([[0.5, 0.8, -0.7]], H, k=1, objective="masked"))
    >>> res.solution.mask.tolist(), round(res.cost, 6), round(res.evaluation.magnitude_cost, 6), res.evaluation.retained_small
    ([[False, False, True]], 0.17, 1.37, 1)
    """
    check_objective(instance, "retention-greedy")
    clock = Stopwatch(time_limit)
    keep, timed_out = greedy_mask(instance, start=start, clock=clock)
    return make_result(instance, RetentionSolution(keep), method="retention-greedy", runtime=clock.elapsed(),
                                 iterations=int(instance.m * instance.n - instance.total_kept), seed=seed,
                                 timed_out=timed_out, info={"start": start})
