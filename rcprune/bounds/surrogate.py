"""The surrogate bound: a lower bound on the optimal pruned cost from the row and column sums alone.

See ``proofs/approximation.md``, section "The surrogate and the a-posteriori bound".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcprune.matrix.model import Instance, maximal_shapes

__all__ = ["surrogate_bound", "SurrogateBound"]


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
