"""Simulated annealing for small-weight retention over swap moves (a kept weight <-> a pruned one).

Every move is scored exactly in O(1) from the maintained g = H d and applied in O(n). With a per-row
budget the rows are independent chains run in parallel (numba prange), each with its own counter-based
random stream, so the answer depends on the seed only, not on the thread count or the chunking. With a
layer budget one chain swaps entries across the whole layer. Chains start from the greedy mask and return
the best mask seen, row by row never worse than the start. It is a heuristic: it proves nothing.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange
from tqdm.auto import tqdm

from rcprune import random_stream as rs
from rcprune.retention import kernels as rk
from rcprune.jit import jit
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask
from rcprune.validation import InvalidInstanceError

from rcprune.solvers import check_objective
from rcprune.solvers.retention.greedy import greedy_mask

__all__ = ["retention_annealing", "anneal_mask"]

STARTS = ("greedy", "magnitude")
CALIBRATION_SAMPLES = 200
START_ACCEPTANCE = 0.3     # t0 accepts the mean worsening move with this probability
REFRESH_EVERY = 4096       # moves between exact recomputations of g and E (bounds drift)
CHUNK = 4096               # moves per row (or per layer chain) between time-limit checks


@jit(nogil=True)
def _load_row(w, h, kp, perm, pos):
    """Kept-first permutation of one row; returns (g, E)."""
    n = w.shape[0]
    c = 0
    for j in range(n):
        if kp[j]:
            perm[c] = j
            c += 1
    for j in range(n):
        if not kp[j]:
            perm[c] = j
            c += 1
    for t in range(n):
        pos[perm[t]] = t
    g = rk.pruned_gradient(w, h, kp)
    e = 0.0
    for j in range(n):
        if not kp[j]:
            e += w[j] * g[j]
    return g, e


@jit(parallel=True, nogil=True)
def _init_rows(weights, h, k, keep, perm, pos, grads, err, best_keep, best_err, temp, rng, samples, acceptance):
    m, n = weights.shape
    for i in prange(m):
        g, e = _load_row(weights[i], h, keep[i], perm[i], pos[i])
        grads[i] = g
        err[i] = e
        best_keep[i] = keep[i]
        best_err[i] = e
        total, count = 0.0, 0
        if 0 < k < n:
            for _ in range(samples):
                a = perm[i, rs.random_below(rng, i, k)]
                b = perm[i, k + rs.random_below(rng, i, n - k)]
                d = rk.swap_delta(weights[i], h, grads[i], a, b)
                if d > 0:
                    total += d
                    count += 1
        temp[i] = total / count / math.log(1.0 / acceptance) if count else 0.0


@jit(parallel=True, nogil=True)
def _anneal_rows(weights, h, k, keep, perm, pos, grads, err, best_keep, best_err, temp, alpha, rng, done,
                 total_moves, chunk):
    """Up to ``chunk`` more moves of every row chain (rows in parallel); all state lives in the arrays."""
    m, n = weights.shape
    for i in prange(m):
        if k == 0 or k == n:
            done[i] = total_moves
            continue
        w, kp, g, pr, ps = weights[i], keep[i], grads[i], perm[i], pos[i]
        end = min(total_moves, done[i] + chunk)
        while done[i] < end:
            a = pr[rs.random_below(rng, i, k)]
            b = pr[k + rs.random_below(rng, i, n - k)]
            d = rk.swap_delta(w, h, g, a, b)
            if d <= 0.0 or (temp[i] > 0.0 and rs.random_uniform(rng, i) < math.exp(-d / temp[i])):
                rk.apply_swap(w, h, g, kp, a, b)
                pa, pb = ps[a], ps[b]
                pr[pa], pr[pb] = b, a
                ps[a], ps[b] = pb, pa
                err[i] += d
                if err[i] < best_err[i]:
                    best_err[i] = err[i]
                    best_keep[i] = kp
            temp[i] *= alpha
            done[i] += 1
            if done[i] % REFRESH_EVERY == 0:
                gg, e = _load_row(w, h, kp, pr, ps)
                g[:] = gg
                err[i] = e


@jit(nogil=True)
def _init_layer(weights, h, keep, perm, pos, grads, reals, rng, samples, acceptance):
    """Layer chain: flat kept-first permutation over all m n entries; reals = [E, best E, temperature]."""
    m, n = weights.shape
    kept = 0
    for t in range(m * n):
        if keep[t // n, t % n]:
            perm[kept] = t
            kept += 1
    c = kept
    for t in range(m * n):
        if not keep[t // n, t % n]:
            perm[c] = t
            c += 1
    for t in range(m * n):
        pos[perm[t]] = t
    e = 0.0
    for i in range(m):
        g, ei = _load_row(weights[i], h, keep[i], np.empty(n, np.int64), np.empty(n, np.int64))
        grads[i] = g
        e += ei
    reals[0], reals[1] = e, e
    total, count = 0.0, 0
    if 0 < kept < m * n:
        for _ in range(samples):
            d = _layer_delta(weights, h, grads, perm[rs.random_below(rng, 0, kept)],
                             perm[kept + rs.random_below(rng, 0, m * n - kept)])
            if d > 0:
                total += d
                count += 1
    reals[2] = total / count / math.log(1.0 / acceptance) if count else 0.0
    return kept


@jit(nogil=True)
def _layer_delta(weights, h, grads, a, b):
    n = weights.shape[1]
    ia, ja, ib, jb = a // n, a % n, b // n, b % n
    if ia == ib:
        return rk.swap_delta(weights[ia], h, grads[ia], ja, jb)
    return rk.removal_delta(weights[ia], h, grads[ia], ja) + rk.restore_delta(weights[ib], h, grads[ib], jb)


@jit(nogil=True)
def _anneal_layer(weights, h, kept, keep, perm, pos, grads, best_keep, reals, alpha, rng, done, total_moves, chunk):
    m, n = weights.shape
    size = m * n
    if kept == 0 or kept == size:
        done[0] = total_moves
        return
    end = min(total_moves, done[0] + chunk)
    while done[0] < end:
        a = perm[rs.random_below(rng, 0, kept)]
        b = perm[kept + rs.random_below(rng, 0, size - kept)]
        d = _layer_delta(weights, h, grads, a, b)
        if d <= 0.0 or (reals[2] > 0.0 and rs.random_uniform(rng, 0) < math.exp(-d / reals[2])):
            ia, ja, ib, jb = a // n, a % n, b // n, b % n
            if ia == ib:
                rk.apply_swap(weights[ia], h, grads[ia], keep[ia], ja, jb)
            else:
                rk.apply_removal(weights[ia], h, grads[ia], keep[ia], ja)
                rk.apply_restore(weights[ib], h, grads[ib], keep[ib], jb)
            pa, pb = pos[a], pos[b]
            perm[pa], perm[pb] = b, a
            pos[a], pos[b] = pb, pa
            reals[0] += d
            if reals[0] < reals[1]:
                reals[1] = reals[0]
                best_keep[:, :] = keep
        reals[2] *= alpha
        done[0] += 1
        if done[0] % REFRESH_EVERY == 0:
            e = 0.0
            for i in range(m):
                grads[i] = rk.pruned_gradient(weights[i], h, keep[i])
                e += rk.row_error(weights[i], h, keep[i])
            reals[0] = e


def anneal_mask(instance: RetentionInstance, start_mask: np.ndarray, *, seed: int, moves: int,
                t_end_ratio: float, clock: Stopwatch, progress: bool = False):
    """Anneal from ``start_mask``; returns (mask, moves done, timed out). Rows never get worse than the start."""
    w, h = instance.weights, instance.hessian
    m, n = instance.shape
    keep = start_mask.copy()
    best_keep = keep.copy()
    grads = np.zeros((m, n))
    alpha = t_end_ratio ** (1.0 / max(1, moves))
    timed_out = False
    bar = tqdm(total=moves, disable=not progress, desc="retention-annealing", unit="move")
    if instance.scope == "row":
        perm, pos = np.empty((m, n), np.int64), np.empty((m, n), np.int64)
        err, best_err, temp = np.empty(m), np.empty(m), np.empty(m)
        done = np.zeros(m, np.int64)
        rng = np.array([rs.stream_seed(seed, i) for i in range(m)], dtype=np.uint64)
        _init_rows(w, h, instance.k, keep, perm, pos, grads, err, best_keep, best_err, temp, rng,
                   CALIBRATION_SAMPLES, START_ACCEPTANCE)
        while done.min() < moves:
            if clock.expired():
                timed_out = True
                break
            before = int(done.min())
            _anneal_rows(w, h, instance.k, keep, perm, pos, grads, err, best_keep, best_err, temp, alpha, rng,
                         done, moves, CHUNK)
            bar.update(int(done.min()) - before)
        # exact comparison with the start, row by row: the result is never worse than the start
        worse = rk.row_errors(w, h, best_keep) > rk.row_errors(w, h, start_mask)
        best_keep[worse] = start_mask[worse]
        total = int(done.sum())
    else:
        perm, pos = np.empty(m * n, np.int64), np.empty(m * n, np.int64)
        reals, done = np.zeros(3), np.zeros(1, np.int64)
        rng = np.array([rs.stream_seed(seed, 0)], dtype=np.uint64)
        kept = _init_layer(w, h, keep, perm, pos, grads, reals, rng, CALIBRATION_SAMPLES, START_ACCEPTANCE)
        while done[0] < moves:
            if clock.expired():
                timed_out = True
                break
            before = int(done[0])
            _anneal_layer(w, h, kept, keep, perm, pos, grads, best_keep, reals, alpha, rng, done, moves, CHUNK)
            bar.update(int(done[0]) - before)
        if rk.row_errors(w, h, best_keep).sum() > rk.row_errors(w, h, start_mask).sum():
            best_keep = start_mask.copy()
        total = int(done[0])
    bar.close()
    return best_keep, total, timed_out


def retention_annealing(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                        moves: int | None = None, start: str = "greedy", t_end_ratio: float = 1e-4,
                        progress: bool = False) -> SolveResult:
    """Simulated annealing over swap moves, started from the greedy (or magnitude) mask.

    Guarantee: the returned error is at most the start's, row by row (row scope) or in total.

    Parameters
    ----------
    instance : RetentionInstance
    moves : int, optional
        Moves per row chain (row scope; default 200 n) or of the layer chain (default 200 m n).
    start : {"greedy", "magnitude"}
    t_end_ratio : float
        Geometric cooling from the calibrated t0 (the mean worsening move is accepted with probability
        0.3) down to ``t0 * t_end_ratio`` over the moves.
    progress : bool
        Show a tqdm progress bar.

    Notes
    -----
    A move swaps a random kept weight with a random pruned one (of the same row in row scope, of any
    row in layer scope): O(1) to score from g = H d and O(n) to apply when accepted; g and E are
    recomputed exactly every 4096 moves to bound floating-point drift. Time: O(moves * (1 + a n)) per
    chain for an acceptance rate a; the time limit is checked every 4096 moves.

    >>> import rcprune
    >>> H = [[1.0, -0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> inst = rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=1, objective="masked")
    >>> res = retention_annealing(inst, seed=1)
    >>> res.solution.mask.tolist(), round(res.cost, 6), res.evaluation.retained_small
    ([[False, False, True]], 0.2, 1)
    """
    check_objective(instance, "retention-annealing")
    clock = Stopwatch(time_limit)
    if start not in STARTS:
        raise InvalidInstanceError(f"start must be one of {STARTS}, got {start!r}")
    size = instance.n if instance.scope == "row" else instance.m * instance.n
    if moves is None:
        moves = 200 * size
    if isinstance(moves, bool) or not isinstance(moves, (int, np.integer)) or moves < 0:
        raise InvalidInstanceError(f"moves must be an integer >= 0, got {moves!r}")
    if not (isinstance(t_end_ratio, (int, float)) and 0.0 < t_end_ratio <= 1.0):
        raise InvalidInstanceError(f"t_end_ratio must be a number in (0, 1], got {t_end_ratio!r}")
    if start == "greedy":
        start_mask, timed_out = greedy_mask(instance, clock=clock)
    else:
        start_mask, timed_out = magnitude_mask(instance), False
    mask, done, stopped = anneal_mask(instance, start_mask, seed=seed, moves=int(moves),
                                      t_end_ratio=float(t_end_ratio), clock=clock, progress=progress)
    start_cost = float(rk.row_errors(instance.weights, instance.hessian, start_mask).sum())
    return make_result(instance, RetentionSolution(mask), method="retention-annealing", runtime=clock.elapsed(),
                                 iterations=done, seed=seed, timed_out=timed_out or stopped,
                                 info={"start": start, "start_cost": start_cost, "moves": int(moves)})
