"""Simulated annealing on the compensated objective: each row's chain proposes uniform swaps (a kept weight
out, a pruned one in), scores each exactly in O(1) from the slot kernels' state and applies an accepted one
in O(|T| k) (:func:`rcprune.retention.compensated_kernels.anneal_rows`). Chains start from OBC's mask (or
SparseGPT's on large layers, with candidates as in the tabu search), run in parallel, each on its own
counter-based random stream (the answer depends on ``seed`` only), and keep the best support they visit,
so a row is never worse than its start. A layer budget then descends with transfers between rows. It is a
heuristic: it proves nothing. On the demo's trained layers it stays above the tabu search at equal or
greater time (``rcprune bench layerwise``): most random swaps are poor, and tabu takes the best one each step.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from rcprune import random_stream as rs
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.compensated_kernels import anneal_rows
from rcprune.retention.model import RetentionInstance, RetentionSolution
from rcprune.validation import check_schedule

from rcprune.solvers import check_objective
from rcprune.solvers.retention.compensated_start import CANDIDATES, row_data, start_mask
from rcprune.solvers.retention.swap import TOLERANCE, descend

__all__ = ["compensated_annealing"]

BLOCK_WORK = 2e9       # rows per parallel block between time-limit checks: about proposals (n + k) each
REFRESH = 64           # accepted swaps of a row between exact recomputations of its inverse
ROUND_PROPOSALS = 256  # proposals between re-choosing the candidates (and rebuilding the state)


def compensated_annealing(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                          progress: bool = False, proposals: int = 20000, acceptance: float = 0.05,
                          final: float = 1e-3, start: str = "auto", candidates: int | None = None) -> SolveResult:
    """Simulated annealing over swaps, per row, from OBC's or SparseGPT's mask.

    Never worse than its start. No approximation guarantee. O(m (k^3 + proposals / ROUND_PROPOSALS
    (c k^2 + n k) + accepted |T| k)) after the start, with c candidates and |T| = k + c; rows in parallel.

    Parameters
    ----------
    proposals : int
        Swaps proposed per row.
    acceptance : float
        Probability with which the first temperature accepts the start's mean worsening swap (0 < . < 1).
    final : float
        Last temperature as a share of the first (0 < . <= 1; geometric cooling).
    start : {"auto", "obc", "sparsegpt"}
        As in :func:`rcprune.solvers.retention.tabu.compensated_tabu`.
    candidates : int, optional
        Pruned weights a proposal may bring in, re-chosen every ``ROUND_PROPOSALS`` proposals (default 32,
        from either start: on the demo's trained layers, uniform proposals over every pruned weight mostly
        score poor swaps; 32 candidates gave lower errors at the same number of proposals).

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = compensated_annealing(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0))
    >>> res.solution.mask.tolist(), round(res.cost, 4)
    ([[True, False, True]], 0.1216)
    """
    check_objective(instance, "compensated-annealing")
    seed, proposals, acceptance, final = check_schedule(seed, proposals, acceptance, final)
    clock = Stopwatch(time_limit)
    candidates = CANDIDATES if candidates is None else candidates
    keep, timed_out, start, candidates = start_mask(instance, start, candidates, clock=clock, progress=progress)
    h, m, n = instance.hessian, instance.m, instance.n
    targets, energies, tol = row_data(instance, TOLERANCE)
    rng = np.array([rs.stream_seed(seed, i) for i in range(m)], dtype=np.uint64)
    errors, moves = np.zeros(m), np.zeros(m, dtype=np.int64)
    bar = tqdm(total=m, desc="annealing rows", disable=not progress, leave=False)
    block = int(max(1, min(64, BLOCK_WORK // max(1, proposals * (n + int(keep.sum()) // max(m, 1)) ))))
    for lo in range(0, m, block):
        if timed_out or (timed_out := clock.expired()):
            break
        rows = np.arange(lo, min(m, lo + block), dtype=np.int64)
        with threadpool_limits(1, user_api="blas"):     # the rows' threads each call LAPACK: no nesting
            anneal_rows(targets, energies, h, keep, rows, proposals, acceptance, final, candidates,
                        ROUND_PROPOSALS, REFRESH, tol, rng, errors, moves)
        bar.update(rows.size)
    bar.close()
    transfers = 0
    if instance.scope == "layer" and not timed_out:
        keep, transfers, timed_out = descend(instance, keep, clock=clock)
    return make_result(instance, RetentionSolution(keep), method="compensated-annealing", runtime=clock.elapsed(),
                       iterations=proposals * m + transfers, seed=seed, timed_out=timed_out,
                       info={"accepted": int(moves.sum()), "transfers": transfers, "proposals": proposals,
                             "start": start, "candidates": candidates})
