"""Greedy A for RC pruning: rows and columns chosen independently by their full sums.

For every maximal feasible shape (r, c) keep the r rows and the c columns with the largest sums and
return the shape with the smallest true pruned cost. Its cost is at most the surrogate (pruned row sums
plus pruned column sums), which is at most twice the optimum; the same surrogate, computed here once for
every solver, gives an a-posteriori lower bound on the optimum.
"""
from __future__ import annotations

import numpy as np

from rcprune.jit import jit
from rcprune.bounds.surrogate import surrogate_bound
from rcprune.matrix.model import Instance, Solution, maximal_shapes
from rcprune.result import SolveResult, Stopwatch, make_result

__all__ = ["greedy_independent"]


@jit
def _top_block_sums(scores, row_order, col_order, shape_rows, shape_cols):
    """kept[k] = sum of the top-shape_rows[k] x top-shape_cols[k] block of the permuted matrix.

    One row of the 2-D prefix sum is kept at a time: O(m n) time, O(n) memory.
    """
    width = shape_cols.max()
    prefix = np.zeros(width)
    kept = np.empty(shape_rows.shape[0])
    k = 0
    for i in range(shape_rows[-1]):
        row = scores[row_order[i]]
        running = 0.0
        for j in range(width):
            running += row[col_order[j]]
            prefix[j] += running
        while k < shape_rows.shape[0] and shape_rows[k] == i + 1:
            kept[k] = prefix[shape_cols[k] - 1]
            k += 1
    return kept


def greedy_independent(instance: Instance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Greedy A: for every maximal shape (r, c) keep the top-r rows and top-c columns by full sums.

    Guarantee: ``cost <= min_shapes sur <= 2 OPT``, and ``lower_bound`` (see :func:`surrogate_bound`)
    satisfies ``lower_bound <= OPT``.

    Parameters
    ----------
    instance : Instance
        Budget form (every r in 1..min(m, K), c = min(n, K // r)) or fixed shape (only its (r, c)).
    seed, time_limit
        Accepted for the common interface; the method is deterministic and runs to completion.

    Returns
    -------
    SolveResult
        ``info``: ``shape`` (chosen (r, c)), ``shape_costs`` (list of (r, c, cost) for every shape tried),
        ``surrogate`` and ``surrogate_shape``.

    Notes
    -----
    Rows and columns are sorted once by their sums (stable: ties go to the lower index). The kept sum of
    the top-r x top-c block is a 2-D prefix sum of the permuted matrix, built one row at a time, so every
    shape costs O(1) after O(m n) work: O(m n + m log m + n log n) in all. The cost of the block is at
    most its surrogate, the minimum of sur over that shape, hence the guarantee.
    See ``proofs/approximation.md``, section "Greedy A (independent sums)".

    >>> import rcprune
    >>> res = greedy_independent(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2))
    >>> res.solution, res.cost
    (Solution(rows=[0], cols=[0, 2]), 6.0)
    """
    clock = Stopwatch(time_limit)
    row_order = np.argsort(-instance.row_sums, kind="stable")
    col_order = np.argsort(-instance.col_sums, kind="stable")
    shape_rows, shape_cols = maximal_shapes(instance)
    kept = _top_block_sums(instance.scores, row_order, col_order, shape_rows, shape_cols)
    best = int(np.argmax(kept))
    r, c = int(shape_rows[best]), int(shape_cols[best])
    solution = Solution.from_indices(instance.m, instance.n, row_order[:r], col_order[:c])
    bound = surrogate_bound(instance)
    info = {
        "shape": (r, c),
        "shape_costs": [(int(a), int(b), float(instance.total - k)) for a, b, k in zip(shape_rows, shape_cols, kept)],
        "surrogate": bound.surrogate,
        "surrogate_shape": bound.shape,
    }
    return make_result(instance, solution, method="greedy-independent", runtime=clock.elapsed(),
                       iterations=len(shape_rows), lower_bound=bound.lower_bound, seed=seed, info=info)
