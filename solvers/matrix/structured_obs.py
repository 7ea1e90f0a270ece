"""Structured-OBS column elimination, the anchor for data-aware RC (as in Mauch et al. 2024 and ZipLM).

Starting from every column kept, with A = H^-1 shared by all rows and each row's refit v_i = w_i, drop
the column j of least summed OBS error sum_i v_ij^2 / A_jj, refit every row on the rest
(v_i -= (v_ij / A_jj) A_j:) and downdate A (A -= A_:j A_j: / A_jj). Each drop adds exactly
v_ij^2 / A_jj to row i's post-refit error, so every prefix of the elimination is scored exactly: with c
columns left, keep the ⌊K / c⌋ rows of largest benefit (energy - error), and return the best c.
"""
from __future__ import annotations

import numpy as np

from rcprune.compensation import quadratic_forms
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import check_int_option

from rcprune.solvers import check_objective

__all__ = ["structured_obs", "eliminate_columns", "best_rows", "best_prefix"]


def eliminate_columns(instance: CompensatedInstance, clock: Stopwatch | None = None, rows: np.ndarray | None = None,
                      block: int = 1, stop: int | None = None):
    """The elimination order of the columns (first dropped first) and ``errors[t]``: every row's
    post-refit error with the first t columns dropped (shape (n + 1, m)); columns are scored by the
    summed OBS error over ``rows`` (a mask; default every row). O(n^3 + m n^2).

    ``block > 1`` drops the ``block`` lowest-scored columns at once (a block OBS step: each row's error
    grows by v_J^T A_JJ^-1 v_J, exactly), n / block BLAS-3 steps instead of n rank-1 ones; ``errors`` is
    then exact at the block boundaries and NaN in between. ``stop`` makes t = stop a boundary."""
    weight = np.ones(instance.m) if rows is None else rows.astype(float)
    a = np.linalg.inv(instance.hessian)
    v = np.array(instance.weights, dtype=float)
    m, n = instance.shape
    alive = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    errors = np.full((n + 1, m), np.nan)
    errors[0] = 0.0
    t = 0
    while t < n:
        if clock is not None and clock.expired():
            return order[:t], errors[:t + 1]
        b = min(block, n - t) if stop is None or t >= stop else min(block, stop - t)
        diag = np.where(alive, np.diag(a), np.inf)
        score = np.where(alive, (weight @ (v * v)) / np.where(alive, diag, 1.0), np.inf)
        if b == 1:
            j = int(np.argmin(score))
            order[t] = j
            errors[t + 1] = errors[t] + v[:, j] ** 2 / a[j, j]
            v -= np.outer(v[:, j] / a[j, j], a[j])
            a -= np.outer(a[:, j], a[j]) / a[j, j]
            drop = [j]
        else:
            drop = np.argsort(score, kind="stable")[:b]
            order[t:t + b] = drop
            inv = np.linalg.inv(a[np.ix_(drop, drop)])
            vj = v[:, drop]
            errors[t + b] = errors[t] + quadratic_forms(vj, inv)
            v -= (vj @ inv) @ a[drop]
            a -= a[:, drop] @ inv @ a[drop]
        alive[drop] = False
        v[:, drop] = 0.0
        a[drop, :] = 0.0
        a[:, drop] = 0.0
        a[drop, drop] = 1.0    # any positive value: dropped columns are never scored again
        t += len(drop)
    return order, errors


def best_rows(instance: CompensatedInstance, row_errors: np.ndarray, n_cols: int) -> tuple[float, np.ndarray]:
    """``(cost, row mask)`` of the best rows for ``n_cols`` kept columns with these per-row errors."""
    r = instance.rows_for(n_cols)
    benefit = instance.energies - row_errors
    keep = np.zeros(instance.m, dtype=bool)
    if r > 0 and n_cols > 0:
        keep[np.argsort(-benefit, kind="stable")[:r]] = True
    return float(instance.energies.sum() - benefit[keep].sum()), keep


def best_prefix(instance: CompensatedInstance, clock: Stopwatch | None = None, rows: np.ndarray | None = None,
                block: int = 1):
    """``((cost, row mask, column mask), steps)``: the best (R, C) over every prefix of the column
    elimination scored over ``rows`` (default all) (with ``block > 1``, over the block boundaries); all
    pruned when nothing fits; a fixed shape takes its prefix (the elimination runs to it even past the
    clock)."""
    n = instance.n
    if instance.fixed_shape is not None:
        # the shape's column count is the only feasible one: reach it whatever the clock says
        t = n - instance.fixed_shape[1]
        order, errors = eliminate_columns(instance, None, rows, block=block, stop=t)
        cols = np.ones(n, dtype=bool)
        cols[order[:t]] = False
        cost, keep = best_rows(instance, errors[t], n - t)
        return (cost, keep, cols), n
    order, errors = eliminate_columns(instance, clock, rows, block=block)
    best = (float(instance.energies.sum()), np.zeros(instance.m, dtype=bool), np.zeros(n, dtype=bool))
    for t in range(len(errors)):
        if instance.rows_for(n - t) > 0 and n - t > 0 and not np.isnan(errors[t]).any():   # a block boundary
            cost, keep = best_rows(instance, errors[t], n - t)
            if cost < best[0]:
                cols = np.ones(n, dtype=bool)
                cols[order[:t]] = False
                best = (cost, keep, cols)
    return best, len(errors) - 1


def structured_obs(instance: CompensatedInstance, *, seed: int = 0, time_limit: float | None = None,
                   block: int = 1) -> SolveResult:
    """Structured-OBS column elimination, then the best rows for every column count; the best pair.

    No approximation guarantee (each elimination step is exact, the sequence greedy). O(n^3 + m n^2 +
    n m log m) time, O(n^2 + m n) memory. A time limit keeps the best column count reached. ``block``
    columns dropped per step (block OBS: exact errors, coarser choices, n / block BLAS-3 steps; for
    large layers) make the column counts tried multiples of it (and a fixed shape's count).

    >>> import numpy as np, rcprune
    >>> H = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> inst = rcprune.Instance.from_layer([[1.0, 0.8, 0.7], [0.1, 0.1, 0.1]], hessian=H, budget=2, damping=0)
    >>> res = structured_obs(inst)
    >>> res.solution, round(res.cost, 4)
    (Solution(rows=[0], cols=[0, 2]), 0.1696)
    """
    check_objective(instance, "structured-obs")
    block = check_int_option(block, "block", minimum=1)
    clock = Stopwatch(time_limit)
    (cost, rows, cols), steps = best_prefix(instance, clock, block=block)
    return make_result(instance, Solution(rows, cols), method="structured-obs", runtime=clock.elapsed(),
                       iterations=steps, seed=seed, timed_out=steps < instance.n,
                       info={"columns": int(cols.sum()), "rows": int(rows.sum()), "block": block})
