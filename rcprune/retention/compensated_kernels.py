"""numba kernels of the compensated objective: a row's support with H_SS^-1 and M = H_:S H_SS^-1 kept in
fixed slots, so that every swap's exact delta costs O(1) and applying one costs O(n k).

Slots hold the kept indices (``slots``, length k). With A = H_SS^-1, M = H_:S A, Schur complements
s_q = H_qq - M_q: H_Sq, refit v and residual g = H (w - v):

* remove the weight in slot j (a = A_jj): v_S -= (v_p / a) A_:j, g += (v_p / a) M_:j, s += M_:j^2 / a,
  A -= A_:j A_j: / a, M -= M_:j A_j: / a (which zeroes slot j's row and column);
* add q into the free slot j: t = M_q: (t_j = 0), u = M H_Sq - H_:q, c = g_q / s_q: v_S -= c t, v_q = c,
  g += c u, s -= u^2 / s_q, A += t t^T / s_q with A_:j = -t / s_q, A_jj = 1 / s_q, M += u t^T / s_q with
  M_:j = -u / s_q;
* the delta of swapping slot j's p for q is v_p^2 / a - (g_q + (v_p / a) M_qj)^2 / (s_q + M_qj^2 / a), as
  in :mod:`rcprune.retention.compensated`, whose :class:`RowSupport` is the numpy reference the tests
  compare these kernels with.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from rcprune.jit import jit

__all__ = ["tabu_rows", "row_state", "swap_row"]


@jit(nogil=True)
def row_state(w, h, slots):
    """``(A, M, schur, v, g, error)`` of the support ``slots`` from scratch. O(n k^2 + k^3)."""
    n, k = w.shape[0], slots.shape[0]
    hs = np.empty((n, k))
    for r in range(n):
        for a in range(k):
            hs[r, a] = h[r, slots[a]]
    hss = np.empty((k, k))
    for a in range(k):
        hss[a] = hs[slots[a]]
    inv = np.linalg.inv(hss) if k else np.zeros((0, 0))
    mm = hs @ np.ascontiguousarray(inv) if k else np.zeros((n, 0))
    schur = np.empty(n)
    for r in range(n):
        acc = h[r, r]
        for a in range(k):
            acc -= mm[r, a] * hs[r, a]
        schur[r] = max(acc, 0.0)
    v = np.zeros(n)
    coef = mm.T @ w if k else np.zeros(0)    # A H_S: w = M^T w
    for a in range(k):
        v[slots[a]] = coef[a]
    g = h @ (w - v)
    error = 0.0
    for a in range(k):
        g[slots[a]] = 0.0
    for r in range(n):
        error += w[r] * g[r]
    return inv, mm, schur, v, g, max(error, 0.0)


@jit(nogil=True)
def swap_row(w, h, slots, inv, mm, schur, v, g, j, q, work):
    """Swap the weight in slot ``j`` for the pruned ``q``, updating every array in place. O(n k); ``work``
    (4 x n scratch) keeps the move free of allocations."""
    n, k = w.shape[0], slots.shape[0]
    p = slots[j]
    a = inv[j, j]
    step = v[p] / a
    colj, mj, t, u = work[0, :k], work[1], work[2, :k], work[3]
    colj[:] = inv[:, j]
    mj[:] = mm[:, j]
    for b in range(k):
        v[slots[b]] -= step * colj[b]
    v[p] = 0.0
    for r in range(n):
        g[r] += step * mj[r]
        schur[r] += mj[r] * mj[r] / a
    for b in range(k):
        for c in range(k):
            inv[b, c] -= colj[b] * colj[c] / a
    for r in range(n):
        for c in range(k):
            mm[r, c] -= mj[r] * colj[c] / a
    for b in range(k):
        inv[b, j] = inv[j, b] = 0.0
    for r in range(n):
        mm[r, j] = 0.0
    # add q into slot j
    s = schur[q]
    t[:] = mm[q, :]
    for r in range(n):
        acc = -h[r, q]
        for b in range(k):
            if b != j:
                acc += mm[r, b] * h[slots[b], q]
        u[r] = acc
    cq = g[q] / s
    for b in range(k):
        if b != j:
            v[slots[b]] -= cq * t[b]
    v[q] = cq
    for r in range(n):
        g[r] += cq * u[r]
        schur[r] = max(schur[r] - u[r] * u[r] / s, 0.0)
    for b in range(k):
        for c in range(k):
            inv[b, c] += t[b] * t[c] / s
        inv[b, j] = inv[j, b] = -t[b] / s
    inv[j, j] = 1.0 / s
    for r in range(n):
        for c in range(k):
            mm[r, c] += u[r] * t[c] / s
        mm[r, j] = -u[r] / s
    slots[j] = q
    for b in range(k):
        g[slots[b]] = 0.0
        schur[slots[b]] = 0.0


@jit(nogil=True)
def _tabu_row(w, h, keep, iterations, tenure, refresh, tol):
    """Tabu search over single swaps of one row from ``keep`` (updated in place to the best support
    found): each step applies the best swap that is not tabu (p added or q removed within ``tenure``
    steps), or any swap reaching a new best; ``tenure = 0`` is plain descent (stops at a local optimum).
    Returns (best error, steps)."""
    n = w.shape[0]
    slots = np.flatnonzero(keep)
    k = slots.shape[0]
    if k == 0 or k == n:
        return row_state(w, h, slots)[5], 0
    inv, mm, schur, v, g, error = row_state(w, h, slots)
    tol_schur = 1e-12 * max(np.max(np.diag(h)), 1e-300)
    best = error
    best_slots = slots.copy()
    last = np.full(n, -(1 << 30))
    pruned = np.flatnonzero(~keep)
    work = np.empty((4, n))
    steps = 0
    for it in range(iterations):
        bd, bj, bq = np.inf, -1, -1
        for jj in range(k):
            p = slots[jj]
            a = inv[jj, jj]
            rem = v[p] * v[p] / a
            f = v[p] / a
            p_tabu = it - last[p] < tenure
            for qq in range(pruned.shape[0]):
                q = pruned[qq]
                z = mm[q, jj]
                den = schur[q] + z * z / a
                if not den > tol_schur:     # q in the span of the others: adding it would divide by ~0
                    continue
                num = g[q] + f * z
                d = rem - num * num / den
                if d < bd and ((not p_tabu and it - last[q] >= tenure) or error + d < best - tol):
                    bd, bj, bq = d, jj, qq
        if bj < 0 or (tenure == 0 and not bd < -tol):
            break
        p, q = slots[bj], pruned[bq]
        swap_row(w, h, slots, inv, mm, schur, v, g, bj, q, work)
        pruned[bq] = p
        last[p] = last[q] = it
        steps += 1
        error += bd
        if steps % refresh == 0:
            inv, mm, schur, v, g, error = row_state(w, h, slots)
        if error < best - tol:
            best = error
            best_slots[:] = slots
    keep[:] = False
    for b in range(k):
        keep[best_slots[b]] = True
    return row_state(w, h, best_slots)[5], steps


@jit(parallel=True, nogil=True)
def tabu_rows(weights, h, keep, rows, iterations, tenure, refresh, tol, errors, steps):
    """:func:`_tabu_row` on each row of ``rows`` (in parallel); ``tol[i]`` is row i's improvement threshold."""
    for t in prange(rows.shape[0]):
        i = rows[t]
        errors[i], steps[i] = _tabu_row(weights[i], h, keep[i], iterations, tenure, refresh, tol[i])
