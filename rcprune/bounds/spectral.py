"""The spectral bound: additive row and column effects exactly, the rest by the spectral norm.

Decompose s_ij = rowmean_i + (colmean_j - mu) + e_ij, with mu the overall mean and E the doubly centred
residual (E 1 = 0, 1^T E = 0). For |R| = r, |C| = c, with x = 1_R - (r/m) 1 and y = 1_C - (c/n) 1,

    sum_{R x C} s = c sum_{i in R} rowmean_i + r sum_{j in C} (colmean_j - mu) + 1_R^T E 1_C,
    1_R^T E 1_C = x^T E y <= sigma_1(E) ||x|| ||y|| = sigma_1(E) sqrt(r (1 - r/m) c (1 - c/n)),

(the centring of E lets 1_R be replaced by x; ||x||^2 = r (1 - r/m)), hence

    U*(r, c) <= c top_r(rowmean) + r top_c(colmean - mu) + sigma_1(E) sqrt(r (1 - r/m) c (1 - c/n)).

On random-like matrices the last term is O(sqrt(K) (sqrt(m) + sqrt(n))) against a kept sum of order
mu K, so the bound tightens as layers grow. Rounding: E 1 and 1^T E are only zero up to rounding; the
residual terms (r/m) |1^T E 1_C| + (c/n) |1_R^T E 1| + (r c / m n) |1^T E 1| are bounded with the computed
absolute row and column sums of E and added. sigma_1 is computed as the square root of the largest
eigenvalue of the smaller Gram matrix (``numpy.linalg.eigvalsh``) and inflated to cover the rounding of
the Gram product and the eigensolver. Cost: O(min(m, n)^2 max(m, n)) for the Gram matrix, O(m + n) per shape.
"""
from __future__ import annotations

import time

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.matrix.model import maximal_shapes

from rcprune.bounds.shapes import BoundResult, ShapeTable, shape_table

__all__ = ["spectral_norm_upper", "double_centre", "spectral_table", "spectral_bound", "spectral_all_shapes"]

_EPS = np.finfo(np.float64).eps


def spectral_norm_upper(matrix: np.ndarray) -> float:
    """A rigorous upper bound on the largest singular value of ``matrix`` (float64).

    ``lambda_max`` of the smaller Gram matrix G, plus the rounding error of G (at most k eps |E|^2
    entry-wise, so at most k eps ||E||_F^2 in spectral norm, k the inner dimension) and a relative
    1e-6 for the eigensolver's backward error.

    >>> round(spectral_norm_upper(np.array([[3.0, 0.0], [0.0, 4.0]])), 6)
    4.000002
    """
    e = np.asarray(matrix, dtype=np.float64)
    if e.size == 0:
        return 0.0
    gram = e @ e.T if e.shape[0] <= e.shape[1] else e.T @ e
    inner = max(e.shape)
    top = float(np.linalg.eigvalsh(gram)[-1])
    frob2 = float(np.trace(gram))
    top = max(top, 0.0) * (1.0 + 1e-6) + 4.0 * (inner + gram.shape[0]) * _EPS * frob2
    return float(np.sqrt(top))


def double_centre(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``(row_means, col_means, mu, E)`` with ``s_ij = row_means_i + col_means_j - mu + E_ij``."""
    rowmean = scores.mean(axis=1)
    colmean = scores.mean(axis=0)
    mu = float(rowmean.mean())
    resid = scores - rowmean[:, None] - colmean[None, :] + mu
    return rowmean, colmean, mu, resid


def _top_prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(-np.sort(-values))))


def _spectral_upper(scores: np.ndarray, sigma: float | None):
    """A function ``(r, c) -> kept upper bound`` (arrays broadcast), and sigma, for the module's bound."""
    m, n = scores.shape
    rowmean, colmean, mu, resid = double_centre(scores)
    if sigma is None:
        sigma = spectral_norm_upper(resid)
    row_err = float(np.abs(resid.sum(axis=1)).sum())
    col_err = float(np.abs(resid.sum(axis=0)).sum())
    all_err = abs(float(resid.sum()))
    top_rows, top_cols = _top_prefix(rowmean), _top_prefix(colmean - mu)

    def upper(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r, c = rows.astype(np.float64), cols.astype(np.float64)
        spread = np.sqrt(np.maximum(r * (1 - r / m), 0.0) * np.maximum(c * (1 - c / n), 0.0))
        slack = (r / m) * col_err + (c / n) * row_err + (r * c / (m * n)) * all_err
        return c * top_rows[rows] + r * top_cols[cols] + sigma * spread + slack

    return upper, sigma


def spectral_table(instance: Instance, sigma: float | None = None) -> ShapeTable:
    """Per maximal shape (r, c): the spectral upper bound on the kept sum (module docstring).

    >>> import rcprune
    >>> t = spectral_table(rcprune.Instance([[1, 1], [1, 1]], budget=2))
    >>> t.kept_upper.round(6).tolist()
    [2.0, 2.0]
    """
    upper, _ = _spectral_upper(instance.scores, sigma)
    rows, cols = maximal_shapes(instance)
    return shape_table(instance, upper(rows, cols))


def spectral_all_shapes(scores: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """``U[r, c]`` for every shape 0 <= r <= m, 0 <= c <= n: the spectral upper bound on the kept sum of
    any solution with exactly r rows and c columns. O(m n) after the spectral norm.

    >>> spectral_all_shapes(np.ones((2, 2))).round(6).tolist()
    [[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 2.0, 4.0]]
    """
    s = np.asarray(scores, dtype=np.float64)
    m, n = s.shape
    upper, _ = _spectral_upper(s, sigma)
    table = upper(np.arange(m + 1)[:, None], np.arange(n + 1)[None, :])
    table[0, :] = 0.0
    table[:, 0] = 0.0
    return table


def spectral_bound(instance: Instance) -> BoundResult:
    """OPT >= total - max over maximal shapes of the spectral bound (see :func:`spectral_table`).

    >>> import rcprune
    >>> spectral_bound(rcprune.Instance([[1, 1], [1, 1]], budget=2)).bound < 2.0 + 1e-9
    True
    """
    start = time.perf_counter()
    sigma = spectral_norm_upper(double_centre(instance.scores)[3])
    table = spectral_table(instance, sigma)
    bound = table.bound(instance)
    r, c = table.worst_shape()
    proof = (f"spectral bound: s = row means + column effects + E (doubly centred), sigma_1(E) <= {sigma:.10g}; "
             f"for every maximal shape (r, c), kept <= c top_r(row means) + r top_c(column effects) + "
             f"sigma_1 sqrt(r (1 - r/m) c (1 - c/n)); the weakest shape is ({r}, {c}), so OPT >= {bound:.10g}")
    return BoundResult(bound, "spectral", proof, table.per_shape(instance), time.perf_counter() - start,
                       len(table.rows), info={"sigma": sigma, "worst_shape": (r, c)})
