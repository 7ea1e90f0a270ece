"""Tabu search with exact swap deltas on the compensated objective, started from OBC (or, on layers too
large for OBC, from SparseGPT's mask).

Each row walks over single swaps (kept p out, pruned q in), always taking the best swap that is not
tabu (p added, or q removed, within the last ``tenure`` steps) even when it raises the error, and keeps
the best support it visits; a swap that reaches a new best is always allowed. The numba kernel
(:func:`rcprune.retention.compensated_kernels.tabu_rows`) scores all k (n - k) swaps of a step in
O(k (n - k)) and applies one in O(n k). Rows run in parallel. A layer budget keeps OBC's split over the
rows during the walk, then descends with transfers between rows
(:func:`rcprune.solvers.retention.swap.descend`).

On large layers the search considers, in each round of ``ROUND_STEPS`` swaps, only a few (``CANDIDATES`` of
:mod:`~rcprune.solvers.retention.compensated_start`) pruned weights with the largest g_q^2 / H_qq (what adding q alone gains at least), so that its state is
|S + candidates| x k instead of n x k.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.compensated_kernels import tabu_rows
from rcprune.retention.model import RetentionInstance, RetentionSolution
from rcprune.validation import check_int_option

from rcprune.solvers import check_objective
from rcprune.solvers.retention.compensated_start import row_data, start_mask
from rcprune.solvers.retention.swap import TOLERANCE, descend

__all__ = ["compensated_tabu"]

BLOCK_WORK = 2e9   # rows per parallel block between time-limit checks: about iterations k (n - k) each
ITERATIONS, LARGE_ITERATIONS = 200, 100   # swaps per row by default, from OBC and from SparseGPT
REFRESH = 64     # swaps of a row between exact recomputations of its inverse
LOCAL_REFRESH = 256  # the same with candidates: an inverse costs k^3, a swap only (k + candidates) k
ROUND_STEPS = 16  # swaps between re-choosing the candidates


def compensated_tabu(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                     progress: bool = False, iterations: int | None = None, tenure: int = 7, start: str = "auto",
                     candidates: int | None = None) -> SolveResult:
    """Tabu search over swaps, per row, from OBC's or SparseGPT's mask (deterministic: ``seed`` is unused).

    Never worse than its start (the best support visited is kept; the start is the first). No
    approximation guarantee. O(m (n^3 / 3 + iterations n k)) from OBC with every candidate; from SparseGPT
    with c candidates O(n^3 + m n^2) for its mask and O(m (k^3 + iterations / ROUND_STEPS (c k^2 + n k)
    + iterations c k)) for the search; rows in parallel.

    Parameters
    ----------
    iterations : int, optional
        Swaps per row (``tenure=0``: at most this many, stopping at a local optimum); default 200 from OBC,
        100 from SparseGPT (a 512 x 4608 layer at 90% then takes about 50 s on 2 cores, and 200 swaps lower
        its error by only 0.5% more: ``rcprune bench large-layer``).
    tenure : int
        Steps a moved weight stays tabu; 0 is plain best-improvement descent.
    start : {"auto", "obc", "sparsegpt"}
        The starting mask; "auto" takes OBC unless its m n^3 / 3 work exceeds 1e11 (``OBC_WORK``).
    candidates : int, optional
        Pruned weights a swap may bring in, re-chosen every ``ROUND_STEPS`` swaps; default all of them
        from OBC, ``CANDIDATES`` (32) from SparseGPT.

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = compensated_tabu(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0))
    >>> res.solution.mask.tolist(), round(res.cost, 4)
    ([[True, False, True]], 0.1216)
    """
    check_objective(instance, "compensated-tabu")
    tenure = check_int_option(tenure, "tenure", minimum=0)
    if iterations is not None:
        iterations = check_int_option(iterations, "iterations", minimum=0)
    clock = Stopwatch(time_limit)
    keep, timed_out, start, candidates = start_mask(instance, start, candidates, clock=clock, progress=progress)
    everyone = candidates >= instance.n
    if iterations is None:
        iterations = ITERATIONS if start == "obc" else LARGE_ITERATIONS
    h, m = instance.hessian, instance.m
    targets, energies, tol = row_data(instance, TOLERANCE)
    errors, steps = np.zeros(m), np.zeros(m, dtype=np.int64)
    bar = tqdm(total=m, desc="tabu rows", disable=not progress, leave=False)
    n, k = instance.n, max(1, int(keep.sum()) // max(m, 1))
    width = n - k if everyone else min(candidates, n - k)
    block = int(max(1, min(64, BLOCK_WORK // max(1, iterations * k * max(width, 1)))))
    for lo in range(0, m, block):
        if timed_out or (timed_out := clock.expired()):
            break
        rows = np.arange(lo, min(m, lo + block), dtype=np.int64)
        with threadpool_limits(1, user_api="blas"):     # the rows' threads each call LAPACK: no nesting
            tabu_rows(targets, energies, h, keep, rows, iterations, tenure, REFRESH if everyone else LOCAL_REFRESH,
                      tol, candidates,
                      REFRESH if everyone else ROUND_STEPS, errors, steps)
        bar.update(rows.size)
    bar.close()
    moves = 0
    if instance.scope == "layer" and not timed_out:
        keep, moves, timed_out = descend(instance, keep, clock=clock)
    return make_result(instance, RetentionSolution(keep), method="compensated-tabu", runtime=clock.elapsed(),
                       iterations=int(steps.sum()) + moves, seed=seed, timed_out=timed_out,
                       info={"swaps": int(steps.sum()), "transfers": moves, "iterations": iterations, "tenure": tenure,
                             "start": start, "candidates": candidates})
