"""Independent brute force for small-weight retention, from the definitions only (no rcprune code), over
every feasible keep-mask: masked E(M) = sum_i d_i^T H d_i; compensated E(M) = sum_i min over v_i zero
off M_i of (w_i - v_i)^T H (w_i - v_i)."""
from __future__ import annotations

import itertools

import numpy as np


def row_optimum(w: np.ndarray, h: np.ndarray, k: int) -> float:
    """min over k-subsets S of the kept set of d^T H d, d = w outside S."""
    n = w.shape[0]
    best = np.inf
    for kept in itertools.combinations(range(n), k):
        d = w.copy()
        d[list(kept)] = 0.0
        best = min(best, float(d @ h @ d))
    return best


def refit_error(w: np.ndarray, h: np.ndarray, kept) -> float:
    """min over v supported on ``kept`` of (w - v)^T H (w - v), by least squares on H's square root."""
    root = np.linalg.cholesky(h).T          # h = root^T root: the error is |root (w - v)|^2
    kept = list(kept)
    v = np.zeros_like(w)
    if kept:
        v[kept] = np.linalg.lstsq(root[:, kept], root @ w, rcond=None)[0]
    return float(np.sum((root @ (w - v)) ** 2))


def compensated_row_optimum(w: np.ndarray, h: np.ndarray, k: int) -> float:
    return min(refit_error(w, h, kept) for kept in itertools.combinations(range(w.shape[0]), k))


def compensated_optimum(w: np.ndarray, h: np.ndarray, k: int, scope: str = "row") -> float:
    """Optimal compensated E (H positive definite) for a row or layer budget k."""
    return optimum(w, h, k, scope, row=compensated_row_optimum)


def optimum(w: np.ndarray, h: np.ndarray, k: int, scope: str = "row", row=row_optimum) -> float:
    """Optimal E for a per-row budget k, or a layer budget k (every split of k over the rows); ``row``
    gives one row's optimum (default: the masked objective's)."""
    m, n = w.shape
    if scope == "row":
        return sum(row(w[i], h, k) for i in range(m))
    table = [[row(w[i], h, c) for c in range(n + 1)] for i in range(m)]
    best = np.inf
    for split in itertools.product(range(n + 1), repeat=m):
        if sum(split) == k:
            best = min(best, sum(table[i][c] for i, c in enumerate(split)))
    return best
