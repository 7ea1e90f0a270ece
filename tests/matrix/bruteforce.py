"""An independent brute force for RC pruning: every row subset times every column subset.

Written from the definition only (no rcprune kernels or solvers), for tests on small matrices:
kept(R, C) = 1_R^T S 1_C for all 2^m x 2^n pairs at once, as a matrix product.
"""
from __future__ import annotations

import itertools

import numpy as np


def all_subsets(k: int) -> np.ndarray:
    """(2^k, k) 0/1 matrix whose rows are all subsets of range(k)."""
    return np.array(list(itertools.product((0, 1), repeat=k)), dtype=np.float64).reshape(-1, k)


def brute_force(scores, budget: int | None = None, shape: tuple[int, int] | None = None):
    """Optimal ``(cost, rows_mask, cols_mask)`` by full enumeration (m, n <= 10 or so)."""
    s = np.asarray(scores, dtype=np.float64)
    m, n = s.shape
    br, bc = all_subsets(m), all_subsets(n)
    kept = br @ s @ bc.T
    r, c = br.sum(axis=1), bc.sum(axis=1)
    if shape is not None:
        feasible = (r[:, None] == shape[0]) & (c[None, :] == shape[1])
    else:
        feasible = np.outer(r, c) <= budget
    kept = np.where(feasible, kept, -np.inf)
    i, j = np.unravel_index(np.argmax(kept), kept.shape)
    return float(s.sum() - kept[i, j]), br[i].astype(bool), bc[j].astype(bool)


def compensated_cost(w, h, rows, cols):
    """Data-aware RC from the definition: pruned rows lose w^T H w, kept rows keep their error refit on the
    columns (H positive definite)."""
    from tests.retention.bruteforce import refit_error

    return sum(refit_error(w[i], h, np.flatnonzero(cols)) if rows[i] else float(w[i] @ h @ w[i])
               for i in range(w.shape[0]))


def compensated_optimum(w, h, budget):
    """The least compensated cost over every (R, C) with |R| |C| <= budget."""
    m, n = w.shape
    best = compensated_cost(w, h, np.zeros(m, bool), np.zeros(n, bool))
    for r in itertools.product([False, True], repeat=m):
        for c in itertools.product([False, True], repeat=n):
            if sum(r) * sum(c) <= budget:
                best = min(best, compensated_cost(w, h, np.array(r), np.array(c)))
    return best
