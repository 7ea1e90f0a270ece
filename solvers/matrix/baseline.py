"""Trivial feasible baseline: keep the rows with the largest sums, and all columns that fit.

It has no approximation guarantee; it exists so the pipeline runs end to end and as a floor in benchmarks.
"""
from __future__ import annotations

import numpy as np

from rcprune.matrix.model import Instance, Solution
from rcprune.result import SolveResult, Stopwatch, make_result

__all__ = ["top_rows"]


def top_rows(instance: Instance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Keep ``r = max(1, K // n)`` rows with the largest sums and the first ``min(n, K // r)`` columns
    by sum (all columns whenever K >= n). O(m n + m log m + n log n).

    >>> import rcprune
    >>> top_rows(rcprune.Instance([[1, 1], [4, 0]], budget=2)).solution
    Solution(rows=[1], cols=[0, 1])
    """
    clock = Stopwatch(time_limit)
    m, n = instance.m, instance.n
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape
    else:
        r = max(1, min(m, instance.budget // n))
        c = min(n, instance.budget // r)
    rows = np.zeros(m, dtype=bool)
    cols = np.zeros(n, dtype=bool)
    rows[np.argsort(-instance.row_sums, kind="stable")[:r]] = True
    cols[np.argsort(-instance.col_sums, kind="stable")[:c]] = True
    return make_result(instance, Solution(rows, cols), method="top-rows", runtime=clock.elapsed(),
                       iterations=1, seed=seed)
