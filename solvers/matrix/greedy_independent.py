"""Greedy A for RC pruning: rows and columns chosen independently by their full sums.

For every maximal feasible shape (r, c) keep the r rows and the c columns with the largest sums and
return the shape with the smallest true pruned cost. Its cost is at most the surrogate (pruned row sums
plus pruned column sums), which is at most twice the optimum; the same surrogate, computed here once for
every solver, gives an a-posteriori lower bound on the optimum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcprune.jit import jit
from rcprune.matrix.model import Instance, Solution
from rcprune.result import SolveResult, Stopwatch, make_result

__all__ = ["greedy_independent", "surrogate_bound", "SurrogateBound", "maximal_shapes"]


def maximal_shapes(instance: Instance, transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The maximal feasible shapes as two int64 arrays ``(lead, other)``, ``lead`` increasing.

    Untransposed, ``lead`` counts rows and ``other = min(n, K // lead)`` columns (the same list as
    :meth:`Instance.feasible_shapes`); with ``transpose=True`` the roles swap: ``lead`` counts columns
    (1..min(n, K)) and ``other = min(m, K // lead)`` rows. A fixed-shape instance has its one shape.

    >>> import rcprune
    >>> maximal_shapes(rcprune.Instance([[1, 2, 3]], budget=2), transpose=True)
    (array([1, 2]), array([1, 1]))
    """
    m, n = (instance.n, instance.m) if transpose else (instance.m, instance.n)
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape[::-1] if transpose else instance.fixed_shape
        return np.array([r], dtype=np.int64), np.array([c], dtype=np.int64)
    lead = np.arange(1, min(m, instance.budget) + 1, dtype=np.int64)
    return lead, np.minimum(n, instance.budget // lead)


@dataclass(frozen=True)
class SurrogateBound:
    """The surrogate minimum and the lower bound it proves.

    Attributes
    ----------
    surrogate : float
        ``min over maximal shapes (r, c)`` of ``sur = (total - top_r row sums) + (total - top_c column sums)``.
    shape : (int, int)
        The shape attaining it (the first one, by increasing r).
    lower_bound : float
        ``max(surrogate / 2, min over shapes of total - min(top_r row sums, top_c column sums))``.
    """

    surrogate: float
    shape: tuple[int, int]
    lower_bound: float


def surrogate_bound(instance: Instance) -> SurrogateBound:
    """A lower bound on the optimal pruned cost from the row and column sums alone.

    For any (R, C), ``cost(R, C) <= sur(R, C) := sum of pruned row sums + sum of pruned column sums
    <= 2 cost(R, C)`` (an entry outside R x C lies in a pruned row or a pruned column, and in at most
    both). For a shape (r, c) the top-r rows and top-c columns by full sums minimize sur, and an optimal
    solution can be grown to a maximal shape (scores are non-negative), hence

        min_shapes sur  <=  sur(OPT)  <=  2 OPT,   so   OPT >= min_shapes sur / 2.

    Also kept(R, C) <= min(top_r row sums, top_c column sums) for |R| <= r, |C| <= c, so
    ``OPT >= min_shapes (total - min(top_r, top_c))``, which is never below ``sur / 2`` shape by shape
    (min <= mean); ``lower_bound`` is the larger of the two. O(m log m + n log n).
    See ``proofs/approximation.md``, section "The surrogate and the a-posteriori bound".

    >>> import rcprune
    >>> b = surrogate_bound(rcprune.Instance([[4, 0], [0, 1]], budget=1))
    >>> b.surrogate, b.shape, b.lower_bound
    (2.0, (1, 1), 1.0)
    """
    rows, cols = maximal_shapes(instance)
    top_rows = np.concatenate(([0.0], np.cumsum(np.sort(instance.row_sums)[::-1])))
    top_cols = np.concatenate(([0.0], np.cumsum(np.sort(instance.col_sums)[::-1])))
    kept_rows, kept_cols = top_rows[rows], top_cols[cols]
    total = instance.total
    sur = np.maximum(2.0 * total - kept_rows - kept_cols, 0.0)
    best = int(np.argmin(sur))
    row_column = float(np.min(total - np.minimum(kept_rows, kept_cols)))
    lower = max(float(sur[best]) / 2.0, row_column, 0.0)
    return SurrogateBound(float(sur[best]), (int(rows[best]), int(cols[best])), lower)


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
