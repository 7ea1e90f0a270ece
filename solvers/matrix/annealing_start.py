"""Where annealing chains start and how their results are finished: start masks, completion to a Pareto
shape, and alternating exact best responses (a polish).
"""
from __future__ import annotations

import numpy as np

from rcprune.matrix import kernels
from rcprune.matrix.model import Instance, Solution

from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

__all__ = ["start_masks", "random_start", "make_maximal", "best_response"]


def _top(values: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(values.shape[0], dtype=bool)
    mask[np.argsort(-values, kind="stable")[:k]] = True
    return mask


def random_start(instance: Instance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A uniform shape (the fixed one, or r uniform in [1, min(m, K)] and c = min(n, K // r)), then uniform
    rows and columns. O(m + n).

    >>> import rcprune
    >>> rows, cols = random_start(rcprune.Instance(np.ones((3, 4)), shape=(2, 3)), np.random.default_rng(0))
    >>> int(rows.sum()), int(cols.sum())
    (2, 3)
    """
    m, n = instance.m, instance.n
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape
    else:
        r = int(rng.integers(1, min(m, instance.budget) + 1))
        c = min(n, instance.budget // r)
    rows, cols = np.zeros(m, dtype=bool), np.zeros(n, dtype=bool)
    rows[rng.choice(m, r, replace=False)] = True
    cols[rng.choice(n, c, replace=False)] = True
    return rows, cols


def make_maximal(instance: Instance, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Budget form: add the best pruned rows and columns until the shape is a Pareto shape.

    Alternately c -> min(n, K // r) and r -> min(m, K // c), each time adding the pruned columns (rows)
    with the largest sums restricted to the kept rows (columns). Never lowers the kept sum (scores are
    non-negative). Fixed-shape masks are returned unchanged. O(m n) per round, at most m + 1 rounds (each
    but the last adds a row).

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> rows, cols = make_maximal(inst, np.array([True, False, True]), np.array([True, False, False]))
    >>> rows.tolist(), cols.tolist()
    ([True, False, True], [True, False, True])
    """
    rows, cols = rows.copy(), cols.copy()
    if instance.fixed_shape is not None:
        return rows, cols
    s, k = instance.scores, instance.budget
    if not rows.any() and cols.sum() > k:  # nothing kept yet: more columns than one row may have
        cols = _top(np.where(cols, instance.col_sums, -np.inf), k)
    if not cols.any() and rows.sum() > k:
        rows = _top(np.where(rows, instance.row_sums, -np.inf), k)
    if not rows.any():
        rows[int(np.argmax(kernels.restricted_row_sums(s, cols) if cols.any() else instance.row_sums))] = True
    while True:
        missing_cols = min(instance.n, k // int(rows.sum())) - int(cols.sum())
        if missing_cols > 0:
            gain = np.where(cols, -np.inf, kernels.restricted_col_sums(s, rows))
            cols[np.argsort(-gain, kind="stable")[:missing_cols]] = True
        missing_rows = min(instance.m, k // int(cols.sum())) - int(rows.sum())
        if missing_rows <= 0:
            return rows, cols
        gain = np.where(rows, -np.inf, kernels.restricted_row_sums(s, cols))
        rows[np.argsort(-gain, kind="stable")[:missing_rows]] = True


def best_response(instance: Instance, rows: np.ndarray, cols: np.ndarray, max_rounds: int = 100):
    """Alternate exact best responses: columns = top-c by sums restricted to R, then rows likewise.

    In the budget form c = min(n, K // r) (and r = min(m, K // c)), in the fixed-shape form the shape is
    kept. Each step keeps at least as much; stops when a round gains nothing. O(m n) per round.
    """
    s, k = instance.scores, instance.budget
    fixed = instance.fixed_shape
    kept = kernels.kept_sum(s, rows, cols)
    for _ in range(max_rounds):
        before = kept
        r = int(rows.sum())
        new_cols = _top(kernels.restricted_col_sums(s, rows), fixed[1] if fixed else min(instance.n, k // r))
        new_kept = kernels.kept_sum(s, rows, new_cols)
        if new_kept > kept:
            cols, kept = new_cols, new_kept
        c = int(cols.sum())
        new_rows = _top(kernels.restricted_row_sums(s, cols), fixed[0] if fixed else min(instance.m, k // c))
        new_kept = kernels.kept_sum(s, new_rows, cols)
        if new_kept > kept:
            rows, kept = new_rows, new_kept
        if kept <= before:
            break
    return rows, cols


def start_masks(instance: Instance, start, seed: int, chains: int, info: dict):
    """Start masks per chain (``start``: "greedy", "random" or a Solution, as in
    :func:`rcprune.solvers.matrix.annealing.local_annealing`), and greedy B's lower bound when it is the
    start; records the start in ``info``."""
    if isinstance(start, Solution):
        info["start"] = "solution"
        return [(start.rows, start.cols)] * chains, None
    if start == "random":
        info["start"] = "random"
        return [random_start(instance, np.random.default_rng([seed, i])) for i in range(chains)], None
    greedy, info["start"] = greedy_row_column(instance), "greedy-row-column"
    if greedy.lower_bound is not None:
        info["lower_bound_source"] = f"{info['start']} a-posteriori bound (annealing proves nothing)"
    return [(greedy.solution.rows, greedy.solution.cols)] * chains, greedy.lower_bound

