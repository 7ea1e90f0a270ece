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

The rows' data enter as b = H w and w^T H w only (E(S) = w^T H w - b_S^T H_SS^-1 b_S), so the state can be
kept on T = S + a few candidates instead of all n indices (:func:`local_state`): M shrinks from n x k to
|T| x k, which is what lets the search run on a 512 x 4608 layer.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from rcprune import random_stream as rs
from rcprune.jit import jit

__all__ = ["tabu_rows", "anneal_rows", "local_state", "residual", "support_error", "swap_row"]

CALIBRATION_SAMPLES = 64   # random swaps scored at the start to set the annealing's first temperature


@jit(nogil=True)
def local_state(b, const, h, slots, cand, inv):
    """The state of the support ``slots`` restricted to T = slots + cand (local indices: slot a is a,
    candidate c is k + c), given A = H_SS^-1 (``inv``, in slot order): ``(H_TT, M_T, schur, v, g, error)``,
    with b = H w and const = w^T H w of the row. O(|cand| k^2 + |T|^2 + n k)."""
    k, c = slots.shape[0], cand.shape[0]
    t = k + c
    glob = np.concatenate((slots, cand))
    ht = np.empty((t, t))
    for r in range(t):
        for a in range(t):
            ht[r, a] = h[glob[r], glob[a]]
    mm = np.zeros((t, k))
    for a in range(k):
        mm[a, a] = 1.0
    if k and c:
        mm[k:] = np.ascontiguousarray(ht[k:, :k]) @ inv
    schur = np.zeros(t)
    for r in range(k, t):
        acc = ht[r, r]
        for a in range(k):
            acc -= mm[r, a] * ht[r, a]
        schur[r] = max(acc, 0.0)
    vs = inv @ b[slots] if k else np.zeros(0)
    v = np.zeros(t)
    v[:k] = vs
    g = np.zeros(t)
    for r in range(k, t):
        acc = b[glob[r]]
        for a in range(k):
            acc -= ht[r, a] * vs[a]
        g[r] = acc
    error = const
    for a in range(k):
        error -= b[slots[a]] * vs[a]
    return ht, mm, schur, v, g, max(error, 0.0)


@jit(nogil=True)
def residual(b, h, slots, vs):
    """g = b - H_:S v_S over every index (zero on the kept ones up to rounding). O(n k)."""
    g = b.copy()
    for r in range(b.shape[0]):
        acc = 0.0
        for a in range(slots.shape[0]):
            acc += h[r, slots[a]] * vs[a]
        g[r] -= acc
    return g


@jit(nogil=True)
def swap_row(h, slots, inv, mm, schur, v, g, j, q, work):
    """Swap the weight in slot ``j`` for the pruned ``q``, updating every array in place. O(n k); ``work``
    (4 x n scratch) keeps the move free of allocations."""
    n, k = h.shape[0], slots.shape[0]
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
def _gram(h, idx):
    out = np.empty((idx.shape[0], idx.shape[0]))
    for a in range(idx.shape[0]):
        for c in range(idx.shape[0]):
            out[a, c] = h[idx[a], idx[c]]
    return out


@jit(nogil=True)
def _diagonal(h):
    """(diag H, the Schur complement below which an addition is refused as degenerate)."""
    diag = np.empty(h.shape[0])
    for r in range(h.shape[0]):
        diag[r] = h[r, r]
    return diag, 1e-12 * max(np.max(diag), 1e-300)


@jit(nogil=True)
def _inverse(b, h, slots):
    """A = H_SS^-1 from scratch and the refit v_S = A b_S. O(k^3)."""
    inv = np.linalg.inv(_gram(h, slots))
    return inv, inv @ b[slots]


@jit(nogil=True)
def support_error(b, const, h, slots):
    """E(S) = const - b_S^T H_SS^-1 b_S from scratch. O(k^3)."""
    if slots.shape[0] == 0:
        return max(const, 0.0)
    bs = b[slots]
    return max(const - bs @ np.linalg.solve(_gram(h, slots), bs), 0.0)


@jit(nogil=True)
def _candidates(b, h, diag, slots, vs, count):
    """The ``count`` pruned indices with the largest g_q^2 / H_qq (a lower bound on what adding q alone
    gains, g = b - H_:S v_S), sorted; every pruned index when ``count`` covers them."""
    n = b.shape[0]
    kept = np.zeros(n, dtype=np.bool_)
    kept[slots] = True
    pruned = np.flatnonzero(~kept)
    if count >= pruned.shape[0]:
        return pruned
    g = residual(b, h, slots, vs)
    score = np.empty(pruned.shape[0])
    for a in range(pruned.shape[0]):
        q = pruned[a]
        score[a] = -g[q] * g[q] / diag[q]
    return np.sort(pruned[np.argsort(score, kind="mergesort")[:count]])


@jit(nogil=True, inline="always")
def _swap_delta(inv, v, mm, schur, g, jj, lslots, q, tol_schur):
    """dE of swapping slot ``jj``'s weight for the pruned local index ``q``; inf when q lies in the span of
    the others (adding it would divide by ~0)."""
    p = lslots[jj]
    a = inv[jj, jj]
    z = mm[q, jj]
    den = schur[q] + z * z / a
    if not den > tol_schur:
        return np.inf
    num = g[q] + v[p] / a * z
    return v[p] * v[p] / a - num * num / den


@jit(nogil=True)
def _tabu_row(b, const, h, keep, iterations, tenure, refresh, tol, candidates, round_steps):
    """Tabu search over single swaps of one row (b = H w, const = w^T H w) from ``keep`` (updated in place to
    the best support found): each step applies the best swap that is not tabu (p added or q removed within
    ``tenure`` steps), or any swap reaching a new best; ``tenure = 0`` is plain descent. Swaps bring in one
    of ``candidates`` pruned weights (by :func:`_candidates`), re-chosen every ``round_steps`` swaps; the
    inverse is recomputed exactly every ``refresh`` swaps. Returns (best error, steps)."""
    n = b.shape[0]
    slots = np.flatnonzero(keep)
    k = slots.shape[0]
    if k == 0 or k == n:
        return support_error(b, const, h, slots), 0
    diag, tol_schur = _diagonal(h)
    inv, vs = _inverse(b, h, slots)
    best = max(const - b[slots] @ vs, 0.0)
    best_slots = slots.copy()
    last = np.full(n, -(1 << 30))
    it, fresh = 0, 0
    while it < iterations:
        if fresh >= refresh:
            inv, vs = _inverse(b, h, slots)
            fresh = 0
        glob = np.concatenate((slots, _candidates(b, h, diag, slots, vs, candidates)))
        ht, mm, schur, v, g, error = local_state(b, const, h, slots, glob[k:], inv)
        t = glob.shape[0]
        lslots, lpruned = np.arange(k), np.arange(k, t)
        work = np.empty((4, t))
        moved = 0
        while moved < round_steps and it < iterations:
            bd, bj, bq = np.inf, -1, -1
            for jj in range(k):
                p = lslots[jj]
                a = inv[jj, jj]
                rem = v[p] * v[p] / a
                f = v[p] / a
                p_tabu = it - last[glob[p]] < tenure
                for qq in range(lpruned.shape[0]):
                    q = lpruned[qq]
                    z = mm[q, jj]
                    den = schur[q] + z * z / a
                    if not den > tol_schur:     # q in the span of the others: adding it would divide by ~0
                        continue
                    num = g[q] + f * z
                    d = rem - num * num / den
                    if d < bd and ((not p_tabu and it - last[glob[q]] >= tenure) or error + d < best - tol):
                        bd, bj, bq = d, jj, qq
            if bj < 0 or (tenure == 0 and not bd < -tol):
                break
            p, q = lslots[bj], lpruned[bq]
            swap_row(ht, lslots, inv, mm, schur, v, g, bj, q, work)
            lpruned[bq] = p
            last[glob[p]] = last[glob[q]] = it
            it += 1
            moved += 1
            error += bd
            if error < best - tol:
                best = error
                best_slots[:] = glob[lslots]
        slots = glob[lslots]
        vs = v[lslots]
        fresh += moved
        if moved == 0:     # stuck among these candidates, which the same state would choose again
            break
    keep[:] = False
    keep[best_slots] = True
    return support_error(b, const, h, np.sort(best_slots)), it


@jit(nogil=True)
def _anneal_row(b, const, h, keep, proposals, acceptance, final, candidates, round_len, refresh, tol, rng, slot):
    """Simulated annealing over single swaps of one row from ``keep`` (updated in place to the best support
    visited): ``proposals`` uniform (kept slot, candidate) swaps, each scored exactly, accepted by the
    Metropolis rule at a temperature cooled geometrically from t0 (where the mean worsening swap of the start
    is accepted with probability ``acceptance``) to ``final`` t0; candidates re-chosen every ``round_len``
    proposals. Stream ``slot`` of ``rng``. Returns (best error, accepted swaps)."""
    n = b.shape[0]
    slots = np.flatnonzero(keep)
    k = slots.shape[0]
    if k == 0 or k == n or proposals == 0:
        return support_error(b, const, h, slots), 0
    diag, tol_schur = _diagonal(h)
    inv, vs = _inverse(b, h, slots)
    best = max(const - b[slots] @ vs, 0.0)
    best_slots = slots.copy()
    temp, cooling = -1.0, final ** (1.0 / proposals)
    done, moves, fresh = 0, 0, 0
    while done < proposals:
        if fresh >= refresh:
            inv, vs = _inverse(b, h, slots)
            fresh = 0
        glob = np.concatenate((slots, _candidates(b, h, diag, slots, vs, candidates)))
        ht, mm, schur, v, g, error = local_state(b, const, h, slots, glob[k:], inv)
        lslots, lpruned = np.arange(k), np.arange(k, glob.shape[0])
        c = lpruned.shape[0]
        work = np.empty((4, glob.shape[0]))
        if temp < 0.0:     # calibrate t0 on the start
            total, count = 0.0, 0
            for _ in range(CALIBRATION_SAMPLES):
                d = _swap_delta(inv, v, mm, schur, g, rs.random_below(rng, slot, k),
                                lslots, lpruned[rs.random_below(rng, slot, c)], tol_schur)
                if np.isfinite(d) and d > 0.0:
                    total += d
                    count += 1
            temp = total / count / -np.log(acceptance) if count else 0.0
        stop = min(proposals, done + round_len)
        while done < stop:
            jj, qq = rs.random_below(rng, slot, k), rs.random_below(rng, slot, c)
            d = _swap_delta(inv, v, mm, schur, g, jj, lslots, lpruned[qq], tol_schur)
            done += 1
            temp *= cooling
            if not np.isfinite(d):
                continue
            if d <= 0.0 or (temp > 0.0 and rs.random_uniform(rng, slot) < np.exp(-d / temp)):
                p = lslots[jj]
                swap_row(ht, lslots, inv, mm, schur, v, g, jj, lpruned[qq], work)
                lpruned[qq] = p
                error += d
                moves += 1
                fresh += 1
                if error < best - tol:
                    best = error
                    best_slots[:] = glob[lslots]
        slots = glob[lslots]
        vs = v[lslots]
    keep[:] = False
    keep[best_slots] = True
    return support_error(b, const, h, np.sort(best_slots)), moves


@jit(parallel=True, nogil=True)
def anneal_rows(targets, energies, h, keep, rows, proposals, acceptance, final, candidates, round_len, refresh, tol,
                rng, errors, moves):
    """:func:`_anneal_row` on each row of ``rows`` (in parallel), row i with stream ``rng[i]``."""
    for t in prange(rows.shape[0]):
        i = rows[t]
        errors[i], moves[i] = _anneal_row(targets[i], energies[i], h, keep[i], proposals, acceptance, final,
                                          candidates, round_len, refresh, tol[i], rng, i)


@jit(parallel=True, nogil=True)
def tabu_rows(targets, energies, h, keep, rows, iterations, tenure, refresh, tol, candidates, round_steps,
              errors, steps):
    """:func:`_tabu_row` on each row of ``rows`` (in parallel): row i has b = ``targets[i]`` (H w_i),
    const = ``energies[i]`` (w_i^T H w_i) and improvement threshold ``tol[i]``."""
    for t in prange(rows.shape[0]):
        i = rows[t]
        errors[i], steps[i] = _tabu_row(targets[i], energies[i], h, keep[i], iterations, tenure, refresh, tol[i],
                                        candidates, round_steps)
