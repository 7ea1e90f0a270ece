"""The top-k row/column bound: a kept row holds at most its c largest scores, a kept column its r largest.

For a shape (r, c) and any |R| = r, |C| = c,

    sum_{R x C} s = sum_{i in R} sum_{j in C} s_ij <= sum_{i in R} top_c(s_i.) <= sum of the r largest top_c(s_i.),

and symmetrically with columns, so U*(r, c) <= min(rows view, columns view). Together with the shape
skeleton of :mod:`rcprune.bounds.shapes` this proves OPT >= total - max over shapes of that minimum. The
bound dominates ``surrogate_bound``'s row/column part shape by shape (top_c(s_i.) <= row sum).
Cost: sorting every row and column, O(m n log(m n)), then O(m + n) per shape.
"""
from __future__ import annotations

import time

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.matrix.model import maximal_shapes

from rcprune.bounds.shapes import BoundResult, ShapeTable, shape_table

__all__ = ["topk_table", "topk_bound", "topk_all_shapes"]


def _top_sum(values: np.ndarray, k: int) -> float:
    if k >= values.shape[0]:
        return float(values.sum())
    return float(np.partition(values, values.shape[0] - k)[values.shape[0] - k:].sum())


def topk_table(instance: Instance) -> ShapeTable:
    """Per maximal shape (r, c): min(sum of the r largest row top-c sums, sum of the c largest column
    top-r sums), an upper bound on the kept sum of every r x c solution.

    >>> import rcprune
    >>> t = topk_table(rcprune.Instance([[4, 1], [0, 3]], budget=2))
    >>> t.rows.tolist(), t.cols.tolist(), t.kept_upper.tolist()
    ([1, 2], [2, 1], [5.0, 4.0])
    """
    s = instance.scores
    row_prefix = np.concatenate([np.zeros((instance.m, 1)), np.cumsum(-np.sort(-s, axis=1), axis=1)], axis=1)
    col_prefix = np.concatenate([np.zeros((1, instance.n)), np.cumsum(-np.sort(-s, axis=0), axis=0)], axis=0)
    rows, cols = maximal_shapes(instance)
    upper = np.empty(rows.shape[0])
    for k, (r, c) in enumerate(zip(rows, cols)):
        upper[k] = min(_top_sum(row_prefix[:, c], int(r)), _top_sum(col_prefix[r, :], int(c)))
    return shape_table(instance, upper)


def topk_all_shapes(scores: np.ndarray) -> np.ndarray:
    """``U[r, c]`` for every shape 0 <= r <= m, 0 <= c <= n: the top-k upper bound on the kept sum of any
    solution with exactly r rows and c columns (budget-free, so one table serves every budget).

    The rows view for all r at once: sort each column of the row top-c prefix table and accumulate; the
    columns view likewise. O(m n log(m n)) time, two (m + 1) x (n + 1) tables.

    >>> topk_all_shapes(np.array([[4.0, 1.0], [0.0, 3.0]])).tolist()
    [[0.0, 0.0, 0.0], [0.0, 4.0, 5.0], [0.0, 4.0, 8.0]]
    """
    s = np.asarray(scores, dtype=np.float64)
    m, n = s.shape
    row_prefix = np.concatenate([np.zeros((m, 1)), np.cumsum(-np.sort(-s, axis=1), axis=1)], axis=1)
    col_prefix = np.concatenate([np.zeros((1, n)), np.cumsum(-np.sort(-s, axis=0), axis=0)], axis=0)
    rows_view = np.zeros((m + 1, n + 1))
    np.cumsum(-np.sort(-row_prefix, axis=0), axis=0, out=rows_view[1:])
    cols_view = np.zeros((m + 1, n + 1))
    np.cumsum(-np.sort(-col_prefix, axis=1), axis=1, out=cols_view[:, 1:])
    return np.minimum(rows_view, cols_view, out=rows_view)


def topk_bound(instance: Instance) -> BoundResult:
    """OPT >= total - max over maximal shapes of the top-k bound (see :func:`topk_table`).

    >>> import rcprune
    >>> round(topk_bound(rcprune.Instance([[4, 1], [0, 3]], budget=2)).bound, 9)
    3.0
    """
    start = time.perf_counter()
    table = topk_table(instance)
    bound = table.bound(instance)
    r, c = table.worst_shape()
    proof = (f"top-k bound: for every maximal shape (r, c), kept <= min(r largest row top-c sums, c largest "
             f"column top-r sums); the weakest shape is ({r}, {c}), so OPT >= total - {table.kept_upper.max():.10g} "
             f"= {bound:.10g} (after the rounding margin)")
    return BoundResult(bound, "topk", proof, table.per_shape(instance), time.perf_counter() - start, len(table.rows),
                       info={"worst_shape": (r, c)})
