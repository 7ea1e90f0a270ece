"""SparseGPT's column sweep (Frantar & Alistarh 2023), the fast anchor for weight selection on large layers.

One Cholesky factor U of H^-1 (H^-1 = U^T U) serves every row. Columns are visited in blocks of
``block``; in each block the mask is chosen from the weights as the sweep has updated them, by the OBS
score w_j^2 / U_jj^2, and then each column in turn is pruned where the mask says so and its error
(w_j - q_j) / U_jj is spread over the block's later columns (lazily over the later blocks, in one
matrix product per block). Row budgets prune the same share of every block in every row (so each row
keeps exactly k); a layer budget prunes a block's share over all its rows by one threshold, as SparseGPT
does. The returned cost is the exact error of SparseGPT's mask after the exact refit (the sweep's own
updated weights are an approximation of it).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask
from rcprune.validation import check_int_option

from rcprune.solvers import check_objective

__all__ = ["sparsegpt", "sparsegpt_mask", "inverse_factor"]


def inverse_factor(h: np.ndarray) -> np.ndarray:
    """The upper triangular U with H^-1 = U^T U, without forming H^-1: with J the order reversal and
    J H J = L L^T, U = J L^-1 J. O(2 n^3 / 3) (inverting H first and factoring that costs ~7 n^3 / 3)."""
    lower = np.linalg.cholesky(h[::-1, ::-1])
    inv, info = lapack.dtrtri(lower, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular Cholesky factor (dtrtri info {info})")
    return np.ascontiguousarray(inv[::-1, ::-1])


def _block_counts(total: int, n: int, starts: range, block: int) -> list[int]:
    """``total`` prunings over the column blocks in proportion to their widths (cumulative rounding)."""
    edges = [min(s + block, n) for s in starts]
    return [total * e // n - total * s // n for s, e in zip(starts, edges)]


def sparsegpt_mask(instance: RetentionInstance, *, block: int = 128, clock: Stopwatch | None = None):
    """SparseGPT's keep-mask and whether the clock ran out (then the magnitude mask). O(n^3 + m n^2)."""
    clock = clock or Stopwatch(None)
    m, n = instance.shape
    w = np.array(instance.weights, dtype=float)
    u = inverse_factor(instance.hessian)
    keep = np.ones((m, n), dtype=bool)
    starts = range(0, n, block)
    per_row = instance.scope == "row"
    counts = _block_counts(n - instance.k if per_row else m * n - instance.k, n, starts, block)
    for start, count in zip(starts, counts):
        if clock.expired():
            return magnitude_mask(instance), True
        end = min(start + block, n)
        w1, u1 = w[:, start:end], u[start:end, start:end]
        score = w1 ** 2 / np.diag(u1)[None, :] ** 2
        pruned = np.zeros_like(score, dtype=bool)
        if count and per_row:
            np.put_along_axis(pruned, np.argpartition(score, count - 1, axis=1)[:, :count], True, axis=1)
        elif count:
            pruned.ravel()[np.argpartition(score.ravel(), count - 1)[:count]] = True
        errors = np.zeros_like(w1)
        for j in range(end - start):
            q = np.where(pruned[:, j], 0.0, w1[:, j])
            errors[:, j] = (w1[:, j] - q) / u1[j, j]
            w1[:, j:] -= np.outer(errors[:, j], u1[j, j:])
            w1[:, j] = q
        w[:, end:] -= errors @ u[start:end, end:]
        keep[:, start:end] = ~pruned
    return keep, False


def sparsegpt(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
              block: int = 128) -> SolveResult:
    """SparseGPT's mask under the compensated objective (deterministic: ``seed`` is unused).

    No approximation guarantee: the mask of each block is chosen greedily by OBS scores on the swept
    weights. O(n^3) for the factor, O(m n^2) for the sweep; a time limit is checked between blocks.

    Parameters
    ----------
    block : int
        Columns per block (SparseGPT's 128): the mask of a block is chosen at once.

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = sparsegpt(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0))
    >>> res.solution.mask.tolist(), round(res.cost, 4)      # OBC keeps 1.0 and 0.7: 0.1216
    ([[False, True, True]], 0.19)
    """
    check_objective(instance, "sparsegpt")
    block = check_int_option(block, "block", minimum=1)
    clock = Stopwatch(time_limit)
    keep, timed_out = sparsegpt_mask(instance, block=block, clock=clock)
    return make_result(instance, RetentionSolution(keep), method="sparsegpt", runtime=clock.elapsed(),
                       iterations=instance.n, seed=seed, timed_out=timed_out, info={"block": block})
