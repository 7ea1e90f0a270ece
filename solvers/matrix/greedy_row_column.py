"""Greedy B for RC pruning: the largest rows first, then the best columns for those rows.

Given kept rows R, the optimal c columns are those with the largest sums restricted to R; greedy B tries
the top-r rows by full sums for every feasible r and keeps the best. Its mirror, greedy column-row, does
the same on the transpose. Both are 2-approximations.
"""
from __future__ import annotations

import numpy as np

from rcprune.matrix import kernels
from rcprune.jit import jit
from rcprune.matrix.model import Instance, Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.bounds.surrogate import surrogate_bound
from rcprune.matrix.model import maximal_shapes

__all__ = ["greedy_row_column", "greedy_column_row"]


@jit
def _restricted_top_sums(scores, row_order, shape_rows, shape_cols):
    """kept[k] = sum of the top shape_cols[k] column sums restricted to the first shape_rows[k] rows.

    The restricted sums grow by one row at a time (O(n) each); a partial selection finds the top-c sum.
    """
    n = scores.shape[1]
    col_sums = np.zeros(n)
    kept = np.empty(shape_rows.shape[0])
    k = 0
    for i in range(shape_rows[-1]):
        row = scores[row_order[i]]
        for j in range(n):
            col_sums[j] += row[j]
        while k < shape_rows.shape[0] and shape_rows[k] == i + 1:
            kept[k] = kernels.top_k_sum(col_sums, shape_cols[k])
            k += 1
    return kept


def _lead_then_other(instance: Instance, transpose: bool, method: str, time_limit: float | None,
                     seed: int) -> SolveResult:
    clock = Stopwatch(time_limit)
    scores = instance.scores_t if transpose else instance.scores
    lead_sums = instance.col_sums if transpose else instance.row_sums
    order = np.argsort(-lead_sums, kind="stable")
    lead, other = maximal_shapes(instance, transpose)
    kept = _restricted_top_sums(scores, order, lead, other)
    best = int(np.argmax(kept))
    lead_mask = np.zeros(scores.shape[0], dtype=bool)
    lead_mask[order[:lead[best]]] = True
    restricted = kernels.restricted_col_sums(scores, lead_mask)
    other_mask = np.zeros(scores.shape[1], dtype=bool)
    other_mask[np.argsort(-restricted, kind="stable")[:other[best]]] = True
    rows, cols = (other_mask, lead_mask) if transpose else (lead_mask, other_mask)
    pairs = zip(other, lead) if transpose else zip(lead, other)
    bound = surrogate_bound(instance)
    info = {
        "shape": (int(rows.sum()), int(cols.sum())),
        "shape_costs": [(int(r), int(c), float(instance.total - k)) for (r, c), k in zip(pairs, kept)],
        "surrogate": bound.surrogate,
        "surrogate_shape": bound.shape,
    }
    return make_result(instance, Solution(rows, cols), method=method, runtime=clock.elapsed(),
                       iterations=len(lead), lower_bound=bound.lower_bound, seed=seed, info=info)


def greedy_row_column(instance: Instance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Greedy B: keep the top-r rows by full sums and the best c columns for them; best over r.

    Guarantee: ``cost <= min_shapes sur <= 2 OPT`` (at each r it keeps at least what greedy A keeps), and
    ``lower_bound <= OPT`` (see :func:`rcprune.solvers.matrix.greedy_independent.surrogate_bound`).

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
    Rows are sorted once by their sums (stable). As r grows, the column sums restricted to the top-r rows
    gain one row (O(n)), and a partial selection gives the top-c restricted sum (O(n) expected): these
    are the optimal columns for those rows. O(m n + m log m + n log n) in all; the final columns are
    chosen by a stable sort, so ties go to the lower index.
    See ``proofs/approximation.md``, section "Greedy B (row-then-column)".

    >>> import rcprune
    >>> res = greedy_row_column(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2))
    >>> res.solution, res.cost
    (Solution(rows=[0], cols=[0, 1]), 5.0)
    """
    return _lead_then_other(instance, False, "greedy-row-column", time_limit, seed)


def greedy_column_row(instance: Instance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Mirror of greedy B: keep the top-c columns by full sums and the best r rows for them; best over c.

    Same guarantee (``cost <= 2 OPT``, ``lower_bound <= OPT``), interface, ``info`` and running time as
    :func:`greedy_row_column`, with rows and columns exchanged: for every c in 1..min(n, K),
    r = min(m, K // c). See ``proofs/approximation.md``, section "Greedy B (row-then-column)".

    >>> import rcprune
    >>> res = greedy_column_row(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2))
    >>> res.solution, res.cost
    (Solution(rows=[0, 1], cols=[0]), 5.0)
    """
    return _lead_then_other(instance, True, "greedy-column-row", time_limit, seed)
