"""The compensated objective: a row's output error after the optimal least-squares refit of its kept
weights (Optimal Brain Surgeon), and its exact incremental updates.

Row w keeps the support S. The refit v (zero outside S) minimizes (w - v)^T H (w - v); with d = w - v
and g = H d (g_S = 0 at the optimum) the error is E(S) = d^T H d = w^T H w - b^T H_SS^-1 b, b = H_S: w.
With A = H_SS^-1 (a_p = A_pp), for every p in S and q outside S:

* remove p:  dE = v_p^2 / a_p;                 v_S -= (v_p / a_p) A_:p,   A -= A_:p A_p: / a_p;
* add q:     dE = -g_q^2 / s_q,  s_q = H_qq - H_qS A H_Sq (the Schur complement);
  v_q = g_q / s_q,  v_S -= v_q A H_Sq,  A grows by bordering;
* swap:      dE = v_p^2 / a_p - (g_q + (v_p / a_p) z_qp)^2 / (s_q + z_qp^2 / a_p),  z = H_{S'S} A,
  the add delta after the remove, written in the quantities before it (removing p raises s_q by
  z_qp^2 / a_p and g_q by (v_p / a_p) z_qp).

:class:`RowSupport` keeps (S, A, v, g) of one row and scores every removal in O(|S|), every addition
in O(n |S|) and every swap in O(n |S|^2) (all of them at once); applying a change costs O(n |S|).
:func:`row_errors_reference` computes E from the definition (a least-squares solve per row): the tests
compare every incremental quantity against it. H must be positive definite (damping makes it so).

>>> import numpy as np
>>> H = np.array([[1.0, 0.5], [0.5, 1.0]])
>>> r = RowSupport(np.array([1.0, 1.0]), H, np.array([True, True]))
>>> r.removal_deltas().round(12).tolist()     # keep one weight, refit it: E = 0.75 either way
[0.75, 0.75]
>>> r.remove(0); round(r.error, 12), r.refit.tolist()
(0.75, [0.0, 1.5])
"""
from __future__ import annotations

import numpy as np

__all__ = ["RowSupport", "row_errors_reference", "swap_deltas_reference"]


def row_errors_reference(weights: np.ndarray, hessian: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row E after the least-squares refit, from the definition: min over v (zero where pruned) of
    (w - v)^T H (w - v), solved with ``lstsq`` row by row. O(m (k^3 + n^2))."""
    out = np.empty(weights.shape[0])
    for i, (w, keep) in enumerate(zip(weights, mask)):
        s = np.flatnonzero(keep)
        v = np.zeros_like(w)
        if s.size:
            v[s] = np.linalg.lstsq(hessian[np.ix_(s, s)], hessian[s] @ w, rcond=None)[0]
        d = w - v
        out[i] = max(0.0, float(d @ hessian @ d))
    return out


def swap_deltas_reference(w: np.ndarray, hessian: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """dE of every swap (kept p out, pruned q in), by recomputing E from the definition: shape
    (kept, pruned) in index order. O(k (n - k) (k^3 + n^2))."""
    base = row_errors_reference(w[None], hessian, keep[None])[0]
    kept, pruned = np.flatnonzero(keep), np.flatnonzero(~keep)
    out = np.empty((kept.size, pruned.size))
    for a, p in enumerate(kept):
        for b, q in enumerate(pruned):
            trial = keep.copy()
            trial[p], trial[q] = False, True
            out[a, b] = row_errors_reference(w[None], hessian, trial[None])[0] - base
    return out


class RowSupport:
    """The support S of one row with its refit: ``kept`` (indices of S in insertion order), ``inverse``
    (H_SS^-1 in that order), ``refit`` (v, length n, zero outside S), ``residual`` (g = H (w - v)) and
    ``error`` (E). Built in O(n |S|^2); see the module docstring for the updates."""

    __slots__ = ("w", "h", "kept", "inverse", "refit", "residual", "error")

    def __init__(self, w: np.ndarray, hessian: np.ndarray, keep: np.ndarray):
        self.w, self.h = w, hessian
        self.kept = np.flatnonzero(keep)
        self.refresh()

    def refresh(self) -> None:
        """Recompute A, v, g and E from S (drift control after many updates). O(n |S|^2)."""
        s, h, w = self.kept, self.h, self.w
        self.inverse = np.linalg.inv(h[np.ix_(s, s)]) if s.size else np.zeros((0, 0))
        self.refit = np.zeros_like(w)
        self.refit[s] = self.inverse @ (h[s] @ w)
        self.residual = h @ (w - self.refit)
        self.residual[s] = 0.0
        self._set_error()

    def _set_error(self) -> None:
        d = self.w - self.refit
        self.error = max(0.0, float(d @ self.residual))

    @property
    def mask(self) -> np.ndarray:
        keep = np.zeros(self.w.shape[0], dtype=bool)
        keep[self.kept] = True
        return keep

    @property
    def pruned(self) -> np.ndarray:
        return np.flatnonzero(~self.mask)

    def removal_deltas(self) -> np.ndarray:
        """dE of removing each kept weight (OBS: v_p^2 / a_p), in ``kept`` order. O(|S|)."""
        return self.refit[self.kept] ** 2 / np.diag(self.inverse)

    def _cross(self, pruned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z = H_{qS} A for the pruned q (rows) and their Schur complements s_q."""
        cross = self.h[np.ix_(pruned, self.kept)]
        z = cross @ self.inverse
        schur = self.h[pruned, pruned] - np.einsum("qs,qs->q", z, cross)
        return z, np.maximum(schur, 0.0)

    def addition_deltas(self, pruned: np.ndarray | None = None) -> np.ndarray:
        """dE of adding each pruned weight (-g_q^2 / s_q), for ``pruned`` (default: all, index order)."""
        pruned = self.pruned if pruned is None else pruned
        _, schur = self._cross(pruned)
        g = self.residual[pruned]
        return -np.divide(g * g, schur, out=np.zeros_like(g), where=schur > 0)

    def swap_deltas(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(deltas, kept, pruned)``: dE of every swap, shape (|S|, n - |S|) (kept p out, pruned q in)."""
        kept, pruned = self.kept, self.pruned
        z, schur = self._cross(pruned)
        a = np.diag(self.inverse)
        vp = self.refit[kept]
        g = self.residual[pruned][:, None] + z * (vp / a)[None, :]
        den = schur[:, None] + z * z / a[None, :]
        gain = np.divide(g * g, den, out=np.zeros_like(g), where=den > 0)
        return (vp * vp / a)[:, None] - gain.T, kept, pruned

    def remove(self, p: int) -> None:
        """Drop weight ``p`` (kept) from S and refit. O(n |S|)."""
        pos = int(np.flatnonzero(self.kept == p)[0])
        col = self.inverse[:, pos].copy()
        a = col[pos]
        step = self.refit[p] / a
        self.refit[self.kept] -= step * col
        self.refit[p] = 0.0
        self.residual += step * (self.h[:, self.kept] @ col)
        self.inverse = np.delete(np.delete(self.inverse - np.outer(col, col) / a, pos, 0), pos, 1)
        self.kept = np.delete(self.kept, pos)
        self.residual[self.kept] = 0.0
        self._set_error()

    def add(self, q: int) -> None:
        """Add weight ``q`` (pruned) to S and refit. O(n |S|)."""
        hs = self.h[self.kept, q]
        t = self.inverse @ hs
        s = float(self.h[q, q] - hs @ t)
        if s <= 0:
            raise np.linalg.LinAlgError(f"H restricted to the support is singular at index {q}")
        c = self.residual[q] / s
        self.refit[self.kept] -= c * t
        self.refit[q] = c
        direction = self.h[:, q] - self.h[:, self.kept] @ t
        self.residual -= c * direction
        k = self.kept.size
        grown = np.empty((k + 1, k + 1))
        grown[:k, :k] = self.inverse + np.outer(t, t) / s
        grown[:k, k] = grown[k, :k] = -t / s
        grown[k, k] = 1.0 / s
        self.inverse = grown
        self.kept = np.append(self.kept, q)
        self.residual[self.kept] = 0.0
        self._set_error()
