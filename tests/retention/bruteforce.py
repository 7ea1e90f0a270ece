"""Independent brute force for small-weight retention, from the definition only (no rcprune code):
E(M) = sum_i d_i^T H d_i over every feasible keep-mask."""
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


def optimum(w: np.ndarray, h: np.ndarray, k: int, scope: str = "row") -> float:
    """Optimal E for a per-row budget k, or a layer budget k (every split of k over the rows)."""
    m, n = w.shape
    if scope == "row":
        return sum(row_optimum(w[i], h, k) for i in range(m))
    table = [[row_optimum(w[i], h, c) for c in range(n + 1)] for i in range(m)]
    best = np.inf
    for split in itertools.product(range(n + 1), repeat=m):
        if sum(split) == k:
            best = min(best, sum(table[i][c] for i, c in enumerate(split)))
    return best
