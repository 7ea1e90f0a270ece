"""Simulated annealing over the kept row and column sets, with incremental O(1) swap deltas.

A chain walks from a start solution by swapping a kept row (column) with a pruned one, each of the
r(m - r) + c(n - c) swaps equally likely, and, in the budget form, by reshaping to a neighbouring Pareto
shape (more rows and fewer columns, or the reverse). Moves are accepted by the Metropolis rule under
geometric cooling. It is a heuristic: it proves nothing.
``local_annealing_numpy`` runs the same chain, move for move, in Python with numpy (for tests and
``move_rate`` benchmarks).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from rcprune.matrix import kernels
from rcprune.jit import jit
from rcprune.random_stream import NumpyStream, random_below, random_uniform, stream_seed
from rcprune.matrix.model import Instance, Solution, check_start
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_flag, check_int_option, check_real_option

from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

__all__ = ["local_annealing", "local_annealing_numpy", "move_rate", "move_stats"]

_JIT = dict(nogil=True, error_model="numpy")
_INLINE = dict(_JIT, inline="always")  # no per-call overhead (array refcounts) in the hot loop

# Chain state slots: counts (int64) and reals (float64).
_R, _C, _DONE, _ACCEPTED, _VERSION = 0, 1, 2, 3, 4
_KEPT, _TEMP, _BEST = 0, 1, 2

ROW_SWAP, COL_SWAP, GROW, SHRINK = 0, 1, 2, 3
PRECISIONS = ("auto", "float32", "float64")  # the scores the chain reads (sums are float64 either way)
RESHAPE_BUDGET = 32          # reshape share of proposals: min(5%, 32 / (m + n)), as one costs O(m + n)
CUTOFF = 40.0                # moves worse than CUTOFF * T are rejected outright (p < 5e-18)
CALIBRATION_SAMPLES = 2000
HEAP_SELECT_MAX = 32         # _select_smallest keeps a heap for at most this many of many, else quickselect
START_ACCEPTANCE = 0.5       # calibrated t0 accepts the mean worsening move with this probability
T_END_RATIO = 1e-3           # default t_end = t0 * T_END_RATIO


# --- numba chain ---------------------------------------------------------------------------------

@jit(**_INLINE)
def _perm_swap(perm, pos, a, b):
    pa, pb = pos[a], pos[b]
    perm[pa], perm[pb] = b, a
    pos[a], pos[b] = pb, pa


@jit(**_JIT)
def _load_state(scores, rows, cols, row_perm, row_pos, col_perm, col_pos, row_sums, col_sums, counts, reals):
    """Rebuild the kept-first permutations and the restricted sums from the masks. O(m n)."""
    for mask, perm, pos, slot in ((rows, row_perm, row_pos, _R), (cols, col_perm, col_pos, _C)):
        k = 0
        for i in range(mask.shape[0]):
            if mask[i]:
                perm[k] = i
                k += 1
        counts[slot] = k
        for i in range(mask.shape[0]):
            if not mask[i]:
                perm[k] = i
                k += 1
        for t in range(perm.shape[0]):
            pos[perm[t]] = t
    row_sums[:] = kernels.restricted_row_sums(scores, cols)
    col_sums[:] = kernels.restricted_col_sums(scores, rows)
    kept = 0.0
    for t in range(counts[_C]):
        kept += col_sums[col_perm[t]]
    reals[_KEPT] = kept
    counts[_VERSION] += 1


@jit(**_INLINE)
def _swap2(val, idx, a, b):
    val[a], val[b] = val[b], val[a]
    idx[a], idx[b] = idx[b], idx[a]


@jit(**_INLINE)
def _sift_down(val, idx, i, d):
    """Restore the max-heap order of the pairs ``val[:d]``, ``idx[:d]`` below position i."""
    v, j = val[i], idx[i]
    while True:
        child = 2 * i + 1
        if child >= d:
            break
        cv, cj = val[child], idx[child]
        if child + 1 < d and (cv < val[child + 1] or (cv == val[child + 1] and cj < idx[child + 1])):
            child += 1
            cv, cj = val[child], idx[child]
        if not (v < cv or (v == cv and j < cj)):
            break
        val[i], idx[i] = cv, cj
        i = child
    val[i], idx[i] = v, j


@jit(**_JIT)
def _select_smallest(val, idx, length, d):
    """Reorder ``val[:length]`` (with ``idx``) so its d smallest (value, index) pairs come first.

    The pairs are distinct, so the chosen set is unique however it is found. Few of many (d <= 32 and
    8 d <= length, as for a reshape's columns): a max-heap of the d smallest so far, O(length) with one
    well-predicted comparison per pair, plus O(log d) per replacement. Otherwise quickselect, O(length)
    expected, its pivots from a hash of the bounds, which keeps adversarial orders (sorted runs) linear
    without drawing from the chain's random stream. The per-pair loops compare and swap in place: a helper
    taking the arrays would cost two atomic reference counts per pair.
    """
    if d <= 0 or d >= length:
        return
    if d <= HEAP_SELECT_MAX and 8 * d <= length:
        for i in range(d // 2 - 1, -1, -1):
            _sift_down(val, idx, i, d)
        top_val, top_idx = val[0], idx[0]
        for t in range(d, length):
            v, i = val[t], idx[t]
            if v < top_val or (v == top_val and i < top_idx):
                val[t], idx[t] = top_val, top_idx
                val[0], idx[0] = v, i
                _sift_down(val, idx, 0, d)
                top_val, top_idx = val[0], idx[0]
        return
    lo, hi, k = 0, length - 1, d - 1
    while lo < hi:
        pivot = lo + (lo * 2654435761 + hi * 40503 + 12345) % (hi - lo + 1)
        _swap2(val, idx, pivot, hi)
        pivot_val, pivot_idx = val[hi], idx[hi]
        store = lo
        for t in range(lo, hi):
            v, i = val[t], idx[t]
            if v < pivot_val or (v == pivot_val and i < pivot_idx):
                val[t], idx[t] = val[store], idx[store]
                val[store], idx[store] = v, i
                store += 1
        _swap2(val, idx, store, hi)
        if store == k:
            return
        if k < store:
            hi = store - 1
        else:
            lo = store + 1


@jit(**_INLINE)
def _move_kind(n_shapes, shape, m, n, r, c, reshape_rate, rng):
    can_swap_row, can_swap_col = 0 < r < m, 0 < c < n
    can_grow, can_shrink = shape + 1 < n_shapes, shape > 0
    can_swap, can_reshape = can_swap_row or can_swap_col, can_grow or can_shrink
    if can_swap and can_reshape:
        reshape = random_uniform(rng, 0) < reshape_rate
    else:
        reshape = can_reshape
    if reshape:
        if can_grow and can_shrink:
            return GROW + random_below(rng, 0, 2)
        return GROW if can_grow else SHRINK
    if can_swap_row and can_swap_col:
        row_swaps, col_swaps = r * (m - r), c * (n - c)  # neighbours: a uniform swap among all of them
        return ROW_SWAP if random_uniform(rng, 0) < row_swaps / (row_swaps + col_swaps) else COL_SWAP
    if can_swap_row:
        return ROW_SWAP
    return COL_SWAP if can_swap_col else -1


@jit(**_JIT)
def _reshape_delta(scores, grow, k, d, r, c, row_perm, col_perm, row_sums, col_sums, rval, rsel, val, csel):
    """Greedy step to the next (grow) or previous shape; the moved rows go to ``rsel[:k]``, columns to
    ``csel[:d]``. Grow adds the k pruned rows with the largest sums, then drops the d kept columns that
    keep the least with them; shrink drops the k kept rows with the smallest sums, then adds the d pruned
    columns that keep the most without them. O(m + k n) plus the selections. The candidates are read
    from the kept-first permutations, which avoids a mask test per row and column."""
    m, n = row_perm.shape[0], col_perm.shape[0]
    sign = 1.0 if grow else -1.0
    first, count = (r, m - r) if grow else (0, r)
    for t in range(count):
        i = row_perm[first + t]
        rval[t], rsel[t] = -sign * row_sums[i], i
    _select_smallest(rval, rsel, count, k)
    delta = 0.0
    for q in range(k):
        delta += sign * row_sums[rsel[q]]
    first, count = (0, c) if grow else (c, n - c)
    for t in range(count):
        j = col_perm[first + t]
        val[t], csel[t] = col_sums[j], j
    for q in range(k):
        row = scores[rsel[q]]
        for t in range(count):
            val[t] += sign * row[csel[t]]
    for t in range(count):
        val[t] *= sign
    _select_smallest(val, csel, count, d)
    for t in range(d):
        delta -= val[t]
    return delta


@jit(**_JIT)
def _apply_reshape(scores, scores_t, grow, k, d, rows, cols, row_perm, row_pos, col_perm, col_pos, row_sums,
                   col_sums, moved_rows, moved_cols, counts):
    """Apply a reshape of k rows and d columns: O(k n + d m)."""
    r, c = counts[_R], counts[_C]
    moved_rows, moved_cols = moved_rows[:k], moved_cols[:d]
    moved_rows.sort()  # a canonical order: the permutations must not depend on how the selection ran
    moved_cols.sort()
    for t in range(k):
        i = moved_rows[t]
        kernels.apply_row_toggle(scores, rows, col_sums, i)
        _perm_swap(row_perm, row_pos, i, row_perm[r + t if grow else r - t - 1])
    for t in range(d):
        j = moved_cols[t]
        kernels.apply_col_toggle(scores_t, cols, row_sums, j)
        _perm_swap(col_perm, col_pos, j, col_perm[c - t - 1 if grow else c + t])
    counts[_R] = r + k if grow else r - k
    counts[_C] = c - d if grow else c + d


@jit(**_JIT)
def _run_chain(scores, scores_t, shape_rows, shape_cols, shape_index, t0, alpha, tol, reshape_rate,
               run_length, refresh, total_moves, chunk, dry, rows, cols, row_perm, row_pos, col_perm, col_pos, row_sums,
               col_sums, best_rows, best_cols, rval, rsel, val, csel, cache_version, cache_delta, counts, reals, rng):
    """Run up to ``chunk`` more moves of the chain; all its state lives in the arrays.

    With ``dry=True`` it only draws ``chunk`` proposals (nothing moves) and returns the mean kept-sum loss
    of the worsening ones (0 if none): the calibration of t0. The loop body is written out in full
    because every array passed to a helper costs a reference-count round trip per call.
    """
    m, n, n_shapes = rows.shape[0], cols.shape[0], shape_rows.shape[0]
    done, accepted = counts[_DONE], counts[_ACCEPTED]
    temp, kept, best = reals[_TEMP], reals[_KEPT], reals[_BEST]
    until_restart, until_refresh = run_length - done % run_length, refresh - done % refresh
    worse_sum, worse_count = 0.0, 0
    for _ in range(chunk):
        if done >= total_moves and not dry:
            break
        r, c = counts[_R], counts[_C]
        shape = shape_index[r]
        kind = _move_kind(n_shapes, shape, m, n, r, c, reshape_rate, rng)
        out, into, k, d = -1, -1, 0, 0
        if kind < 0:  # nothing can move: the chain is done
            done = total_moves
            break
        if kind == ROW_SWAP:
            out = row_perm[random_below(rng, 0, r)]
            into = row_perm[r + random_below(rng, 0, m - r)]
            delta = kernels.row_swap_delta(row_sums, out, into)
        elif kind == COL_SWAP:
            out = col_perm[random_below(rng, 0, c)]
            into = col_perm[c + random_below(rng, 0, n - c)]
            delta = kernels.col_swap_delta(col_sums, out, into)
        else:
            # A reshape is deterministic given the state: its delta is cached until the state changes.
            side = kind - GROW
            other = shape + 1 if kind == GROW else shape - 1
            k, d = abs(shape_rows[other] - r), abs(shape_cols[other] - c)
            if cache_version[side] != counts[_VERSION]:
                cache_delta[side] = _reshape_delta(scores, kind == GROW, k, d, r, c, row_perm, col_perm, row_sums,
                                                   col_sums, rval, rsel[side], val, csel[side])
                cache_version[side] = counts[_VERSION]
            delta = cache_delta[side]
        if dry:
            if delta < 0.0:
                worse_sum -= delta
                worse_count += 1
            continue
        if delta >= 0.0 or (delta > -CUTOFF * temp and random_uniform(rng, 0) < math.exp(delta / temp)):
            if kind == ROW_SWAP:
                kernels.apply_row_swap(scores, rows, col_sums, out, into)
                _perm_swap(row_perm, row_pos, out, into)
            elif kind == COL_SWAP:
                kernels.apply_col_swap(scores_t, cols, row_sums, out, into)
                _perm_swap(col_perm, col_pos, out, into)
            else:
                _apply_reshape(scores, scores_t, kind == GROW, k, d, rows, cols, row_perm, row_pos, col_perm,
                               col_pos, row_sums, col_sums, rsel[kind - GROW], csel[kind - GROW], counts)
            counts[_VERSION] += 1
            kept += delta
            accepted += 1
            if kept > best + tol:
                best = kept
                best_rows[:] = rows
                best_cols[:] = cols
        temp *= alpha
        done += 1
        until_restart -= 1
        until_refresh -= 1
        if until_restart == 0 or until_refresh == 0:
            restart, refreshed = until_restart == 0 and done < total_moves, until_refresh == 0
            until_restart = run_length if until_restart == 0 else until_restart
            until_refresh = refresh if until_refresh == 0 else until_refresh
            if restart:  # reheat from the best so far
                rows[:] = best_rows
                cols[:] = best_cols
                temp = t0
            if restart or refreshed:
                _load_state(scores, rows, cols, row_perm, row_pos, col_perm, col_pos, row_sums, col_sums, counts,
                            reals)
                kept = reals[_KEPT]
    if dry:
        return worse_sum / worse_count if worse_count else 0.0
    counts[_DONE], counts[_ACCEPTED] = done, accepted
    reals[_TEMP], reals[_KEPT], reals[_BEST] = temp, kept, best
    return 0.0


# --- numpy reference of the same chain -------------------------------------------------------------

def _move_kind_numpy(n_shapes, shape, m, n, r, c, reshape_rate, rng):
    can_swap_row, can_swap_col = 0 < r < m, 0 < c < n
    can_grow, can_shrink = shape + 1 < n_shapes, shape > 0
    can_swap, can_reshape = can_swap_row or can_swap_col, can_grow or can_shrink
    reshape = rng.uniform() < reshape_rate if can_swap and can_reshape else can_reshape
    if reshape:
        if can_grow and can_shrink:
            return GROW + rng.below(2)
        return GROW if can_grow else SHRINK
    if can_swap_row and can_swap_col:
        row_swaps, col_swaps = r * (m - r), c * (n - c)
        return ROW_SWAP if rng.uniform() < row_swaps / (row_swaps + col_swaps) else COL_SWAP
    if can_swap_row:
        return ROW_SWAP
    return COL_SWAP if can_swap_col else -1


def _smallest(values: np.ndarray, labels: np.ndarray, d: int) -> np.ndarray:
    """Positions of the d smallest (value, label) pairs: a partition, then ties broken by label. O(N)."""
    if d <= 0:
        return np.zeros(0, dtype=np.int64)
    if d >= values.shape[0]:
        return np.arange(values.shape[0])
    kth = np.partition(values, d - 1)[d - 1]
    below = np.flatnonzero(values < kth)
    ties = np.flatnonzero(values == kth)
    return np.concatenate([below, ties[np.argsort(labels[ties], kind="stable")][:d - below.shape[0]]])


def _reshape_delta_numpy(chain, grow: bool, k: int, d: int):
    s, row_sums, col_sums = chain.scores, chain.row_sums, chain.col_sums
    sign = 1.0 if grow else -1.0
    cand = np.flatnonzero(chain.rows != grow)
    moved_rows = np.sort(cand[_smallest(-sign * row_sums[cand], cand, k)])
    cand = np.flatnonzero(chain.cols == grow)
    vals = sign * (col_sums[cand] + sign * s[np.ix_(moved_rows, cand)].sum(axis=0, dtype=np.float64))
    pick = _smallest(vals, cand, d)
    delta = sign * row_sums[moved_rows].sum() - vals[pick].sum()
    return float(delta), moved_rows, np.sort(cand[pick])


def _propose_numpy(chain, rng):
    m, n = chain.scores.shape
    r, c = int(chain.counts[_R]), int(chain.counts[_C])
    shape = chain.shape_index[r]
    kind = _move_kind_numpy(len(chain.shape_rows), shape, m, n, r, c, chain.reshape_rate, rng)
    if kind == ROW_SWAP:
        out = chain.row_perm[rng.below(r)]
        into = chain.row_perm[r + rng.below(m - r)]
        return kind, out, into, None, None, float(chain.row_sums[into] - chain.row_sums[out])
    if kind == COL_SWAP:
        out = chain.col_perm[rng.below(c)]
        into = chain.col_perm[c + rng.below(n - c)]
        return kind, out, into, None, None, float(chain.col_sums[into] - chain.col_sums[out])
    if kind < 0:
        return kind, -1, -1, None, None, 0.0
    version = int(chain.counts[_VERSION])
    if chain.cache.get(kind, (None,))[0] != version:
        other = shape + 1 if kind == GROW else shape - 1
        k, d = abs(int(chain.shape_rows[other]) - r), abs(int(chain.shape_cols[other]) - c)
        chain.cache[kind] = (version, *_reshape_delta_numpy(chain, kind == GROW, k, d))
    _, delta, moved_rows, moved_cols = chain.cache[kind]
    return kind, -1, -1, moved_rows, moved_cols, delta


def _apply_numpy(chain, kind, out, into, moved_rows, moved_cols):
    s, st = chain.scores, chain.scores_t
    r, c = int(chain.counts[_R]), int(chain.counts[_C])
    chain.counts[_VERSION] += 1
    if kind == ROW_SWAP:
        chain.col_sums += s[into].astype(np.float64) - s[out]
        chain.rows[out], chain.rows[into] = False, True
        _perm_swap_numpy(chain.row_perm, chain.row_pos, out, into)
        return
    if kind == COL_SWAP:
        chain.row_sums += st[into].astype(np.float64) - st[out]
        chain.cols[out], chain.cols[into] = False, True
        _perm_swap_numpy(chain.col_perm, chain.col_pos, out, into)
        return
    grow = kind == GROW
    sign = 1 if grow else -1
    chain.col_sums += sign * s[moved_rows].sum(axis=0, dtype=np.float64)
    chain.row_sums -= sign * st[moved_cols].sum(axis=0, dtype=np.float64)
    chain.rows[moved_rows] = grow
    chain.cols[moved_cols] = not grow
    for t, i in enumerate(moved_rows):
        _perm_swap_numpy(chain.row_perm, chain.row_pos, i, chain.row_perm[r + t if grow else r - t - 1])
    for t, j in enumerate(moved_cols):
        _perm_swap_numpy(chain.col_perm, chain.col_pos, j, chain.col_perm[c - t - 1 if grow else c + t])
    chain.counts[_R] = r + sign * len(moved_rows)
    chain.counts[_C] = c - sign * len(moved_cols)


def _perm_swap_numpy(perm, pos, a, b):
    pa, pb = pos[a], pos[b]
    perm[pa], perm[pb] = b, a
    pos[a], pos[b] = pb, pa


def _load_state_numpy(chain):
    for mask, perm, pos, slot in ((chain.rows, chain.row_perm, chain.row_pos, _R),
                                  (chain.cols, chain.col_perm, chain.col_pos, _C)):
        perm[:] = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
        pos[perm] = np.arange(perm.shape[0])
        chain.counts[slot] = mask.sum()
    chain.row_sums[:] = kernels.restricted_row_sums_reference(chain.scores, chain.cols)
    chain.col_sums[:] = kernels.restricted_col_sums_reference(chain.scores, chain.rows)
    chain.reals[_KEPT] = chain.col_sums[chain.cols].sum()
    chain.counts[_VERSION] += 1


def _calibrate_numpy(chain, samples):
    deltas = np.array([_propose_numpy(chain, chain.stream)[5] for _ in range(samples)])
    worse = deltas[deltas < 0]
    return float(-worse.mean()) if worse.size else 0.0


def _anneal_chunk_numpy(chain, chunk):
    """The numba chain's loop, move for move, with numpy vector operations."""
    rng = chain.stream
    counts, reals = chain.counts, chain.reals
    end = min(chain.total_moves, int(counts[_DONE]) + chunk)
    while counts[_DONE] < end:
        kind, out, into, moved_rows, moved_cols, delta = _propose_numpy(chain, rng)
        if kind < 0:
            counts[_DONE] = chain.total_moves
            break
        if delta >= 0.0 or (delta > -CUTOFF * reals[_TEMP] and rng.uniform() < math.exp(delta / reals[_TEMP])):
            _apply_numpy(chain, kind, out, into, moved_rows, moved_cols)
            reals[_KEPT] += delta
            counts[_ACCEPTED] += 1
            if reals[_KEPT] > reals[_BEST] + chain.tol:
                reals[_BEST] = reals[_KEPT]
                chain.best_rows[:] = chain.rows
                chain.best_cols[:] = chain.cols
        reals[_TEMP] *= chain.alpha
        counts[_DONE] += 1
        done = int(counts[_DONE])
        if done < chain.total_moves and done % chain.run_length == 0:
            chain.rows[:] = chain.best_rows
            chain.cols[:] = chain.best_cols
            _load_state_numpy(chain)
            reals[_TEMP] = chain.t0
        elif done % chain.refresh == 0:
            _load_state_numpy(chain)
    chain.rng[0] = rng.state_after_consumed()  # the numba chain's state at the same point


# --- one chain's state between chunks --------------------------------------------------------------

def pareto_shapes(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """The shapes a chain visits: (r, c) with c = min(n, K // r) and r = min(m, K // c), r increasing.

    No other shape can be better (more rows or columns never keep less), and along the list c strictly
    decreases, so a reshape always trades rows for columns. A fixed-shape instance has its one shape.

    >>> import rcprune
    >>> pareto_shapes(rcprune.Instance(np.ones((3, 4)), budget=5))
    (array([1, 2, 3]), array([4, 2, 1]))
    """
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape
        return np.array([r], dtype=np.int64), np.array([c], dtype=np.int64)
    m, n, k = instance.m, instance.n, instance.budget
    rows = [r for r in range(1, min(m, k) + 1) if min(m, k // min(n, k // r)) == r]
    return np.array(rows, dtype=np.int64), np.array([min(n, k // r) for r in rows], dtype=np.int64)


class _Chain:
    """All state of one chain in arrays, so a chain can stop between chunks and resume bit for bit."""

    def __init__(self, instance: Instance, rows: np.ndarray, cols: np.ndarray, rng_state: int, impl: str,
                 precision: str = "auto"):
        m, n = instance.m, instance.n
        self.impl = impl
        self.precision = _resolve_precision(instance, precision)
        self.scores, self.scores_t = (instance.scores_float32 if self.precision == "float32"
                                      else (instance.scores, instance.scores_t))
        self.shape_rows, self.shape_cols = pareto_shapes(instance)
        self.shape_index = np.full(m + 1, -1, dtype=np.int64)
        self.shape_index[self.shape_rows] = np.arange(len(self.shape_rows))
        self.tol = 1e-12 * instance.total  # a new best must beat the old by more than the sums' drift
        self.reshape_rate = min(0.05, RESHAPE_BUDGET / (m + n))
        self.refresh = max(1 << 18, 4 * m * n)  # moves between exact recomputations (O(m n)) of the sums
        self.rows, self.cols = rows.copy(), cols.copy()
        self.row_perm, self.row_pos = np.empty(m, np.int64), np.empty(m, np.int64)
        self.col_perm, self.col_pos = np.empty(n, np.int64), np.empty(n, np.int64)
        self.row_sums, self.col_sums = np.empty(m), np.empty(n)
        self.val, self.csel = np.empty(n), np.empty((2, n), np.int64)
        self.rval, self.rsel = np.empty(m), np.empty((2, m), np.int64)
        self.cache_version, self.cache_delta = np.full(2, -1, np.int64), np.zeros(2)
        self.cache: dict = {}  # the numpy chain's reshape cache
        self.counts = np.zeros(5, np.int64)
        self.reals = np.zeros(3)
        self.rng = np.array([rng_state], dtype=np.uint64)
        self.stream = NumpyStream(rng_state)  # the numpy chain's draws
        self.t0 = self.alpha = 1.0
        self.run_length, self.total_moves = 1, 0
        self._load()
        if self.shape_index[self.counts[_R]] < 0 or self.shape_cols[self.shape_index[self.counts[_R]]] != self.counts[_C]:
            raise AssertionError("a chain must start from a Pareto shape")
        self.best_rows, self.best_cols = self.rows.copy(), self.cols.copy()
        self.reals[_BEST] = self.reals[_KEPT]

    def _load(self):
        if self.impl == "numba":
            _load_state(self.scores, self.rows, self.cols, self.row_perm, self.row_pos, self.col_perm,
                        self.col_pos, self.row_sums, self.col_sums, self.counts, self.reals)
        else:
            _load_state_numpy(self)

    def calibrate(self) -> float:
        if self.impl == "numpy":
            return _calibrate_numpy(self, CALIBRATION_SAMPLES)
        return self._run(CALIBRATION_SAMPLES, dry=True)

    def schedule(self, t0: float, t_end: float, total_moves: int, restarts: int):
        self.t0, self.t_end, self.total_moves = t0, t_end, total_moves
        self.run_length = max(1, total_moves // (restarts + 1))
        self.alpha = (t_end / t0) ** (1.0 / self.run_length)
        self.reals[_TEMP] = t0

    @property
    def done(self) -> bool:
        return self.counts[_DONE] >= self.total_moves

    def run(self, chunk: int) -> None:
        if self.impl == "numpy":
            _anneal_chunk_numpy(self, chunk)
        else:
            self._run(chunk, dry=False)

    def _run(self, chunk: int, dry: bool) -> float:
        return _run_chain(self.scores, self.scores_t, self.shape_rows, self.shape_cols, self.shape_index, self.t0,
                          self.alpha, self.tol, self.reshape_rate, self.run_length, self.refresh,
                          self.total_moves, chunk, dry, self.rows, self.cols, self.row_perm, self.row_pos,
                          self.col_perm, self.col_pos, self.row_sums, self.col_sums, self.best_rows, self.best_cols,
                          self.rval, self.rsel, self.val, self.csel, self.cache_version, self.cache_delta,
                          self.counts, self.reals, self.rng)


# --- start, polish, driver --------------------------------------------------------------------------

def _top(values: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(values.shape[0], dtype=bool)
    mask[np.argsort(-values, kind="stable")[:k]] = True
    return mask


def _random_start(instance: Instance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    non-negative). Fixed-shape masks are returned unchanged.
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


def _check_options(instance: Instance, moves, chains, t0, t_end, restarts, start, flags: dict):
    moves = check_int_option(moves, "moves", minimum=1)
    chains = check_int_option(chains, "chains", minimum=1)
    restarts = check_int_option(restarts, "restarts", minimum=0)
    if restarts >= moves:
        raise InvalidInstanceError(f"restarts ({restarts}) must be fewer than moves ({moves})")
    t0 = None if t0 is None else check_real_option(t0, "t0")
    t_end = None if t_end is None else check_real_option(t_end, "t_end")
    if t0 is not None and t_end is not None and t_end > t0:
        raise InvalidInstanceError(f"t_end ({t_end}) must not exceed t0 ({t0})")
    for name, flag in flags.items():
        check_flag(flag, name)
    check_start(instance, start)
    return moves, chains, t0, t_end, restarts


def _resolve_precision(instance: Instance, precision) -> str:
    """The scores a chain reads: "float32" copies when asked or, for "auto", when every score fits."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidInstanceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float64" or (precision == "auto" and instance.scores_float32 is None):
        return "float64"
    if instance.scores_float32 is None:
        raise InvalidInstanceError("precision='float32': a non-zero score lies outside float32's normal range "
                                   f"[{np.finfo(np.float32).tiny:.3g}, {np.finfo(np.float32).max:.3g}]; "
                                   "use precision='auto' or 'float64'")
    return "float32"


def _start_masks(instance: Instance, start, seed: int, chains: int, info: dict):
    """Start masks per chain, and greedy B's lower bound when it is the start."""
    if isinstance(start, Solution):
        info["start"] = "solution"
        return [(start.rows, start.cols)] * chains, None
    if start == "random":
        info["start"] = "random"
        return [_random_start(instance, np.random.default_rng([seed, i])) for i in range(chains)], None
    greedy, info["start"] = greedy_row_column(instance), "greedy-row-column"
    if greedy.lower_bound is not None:
        info["lower_bound_source"] = f"{info['start']} a-posteriori bound (annealing proves nothing)"
    return [(greedy.solution.rows, greedy.solution.cols)] * chains, greedy.lower_bound


def _chunk_size(spent: float, moves: float, current: int, remaining: float, target: float = 0.05) -> int:
    """Moves per chain for the next round: about ``target`` seconds, and not past the deadline."""
    if spent <= 0 or moves <= 0:
        return current * 2
    per_move = spent / moves
    return int(max(1000, min(target / per_move, current * 4, remaining / per_move, 1 << 24)))


def _exact_cost(instance: Instance, chain: _Chain) -> float:
    """The cost of the chain's best masks on the float64 scores (the chain's own sums may read float32)."""
    return instance.total - kernels.kept_sum(instance.scores, chain.best_rows, chain.best_cols)


def _drive(runs: list, clock: Stopwatch, parallel: bool, progress: bool, desc: str, instance: Instance):
    """Run the chains chunk by chunk until done or out of time; return (timed_out, trace).

    The trace holds exact costs: when a chain's best improves (by its own sums), its best masks are
    evaluated on the float64 scores, and the cost enters the trace if it is lower than the last one."""
    best_kept = max(ch.reals[_BEST] for ch in runs)
    trace = [(clock.elapsed(), 0, min(_exact_cost(instance, ch) for ch in runs))]
    chunk, timed_out = 1000, False
    pool = ThreadPoolExecutor(max_workers=min(len(runs), 8)) if parallel and len(runs) > 1 else None
    bar = tqdm(total=sum(ch.total_moves for ch in runs), disable=not progress, unit="move", desc=desc)
    try:
        while not all(ch.done for ch in runs):
            if clock.expired():
                timed_out = True
                break
            active = [ch for ch in runs if not ch.done]
            before = sum(int(ch.counts[_DONE]) for ch in runs)
            tic = time.perf_counter()
            if pool is not None:
                list(pool.map(lambda ch: ch.run(chunk), active))
            else:
                for ch in active:
                    ch.run(chunk)
            spent = time.perf_counter() - tic
            done = sum(int(ch.counts[_DONE]) for ch in runs)
            bar.update(done - before)
            chunk = _chunk_size(spent, (done - before) / len(active), chunk, clock.remaining())
            kept_now = max(ch.reals[_BEST] for ch in runs)
            if kept_now > best_kept:
                best_kept = kept_now
                cost = min(_exact_cost(instance, ch) for ch in runs)
                if cost < trace[-1][2]:
                    trace.append((clock.elapsed(), done, cost))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return timed_out, trace


def _anneal(instance: Instance, *, seed: int, time_limit: float | None, moves, chains, t0, t_end, restarts,
            start, polish: bool, parallel: bool, progress: bool, impl: str, method: str,
            precision: str = "auto") -> SolveResult:
    clock = Stopwatch(time_limit)
    moves, chains, t0, t_end, restarts = _check_options(
        instance, moves, chains, t0, t_end, restarts, start,
        {"polish": polish, "parallel": parallel, "progress": progress})
    precision = _resolve_precision(instance, precision)
    info: dict = {"chains": chains, "moves_per_chain": moves, "restarts": restarts, "impl": impl,
                  "precision": precision}
    starts, lower_bound = _start_masks(instance, start, seed, chains, info)
    info["start_cost"] = instance.total - kernels.kept_sum(instance.scores, *starts[0])

    runs = [_Chain(instance, *make_maximal(instance, *st), stream_seed(seed, i), impl, precision)
            for i, st in enumerate(starts)]
    for chain in runs:
        start_t = t0 if t0 is not None else _calibrated_t0(chain, instance)
        chain.schedule(start_t, min(start_t, t_end if t_end is not None else start_t * T_END_RATIO), moves, restarts)
    info["t0"], info["t_end"] = runs[0].t0, runs[0].t_end
    timed_out, trace = _drive(runs, clock, parallel, progress, method, instance)

    # The start (every chain's start when they share one) is a candidate: the result never costs more.
    candidates = [starts[0]] + [(ch.best_rows, ch.best_cols) for ch in runs]
    kept = [kernels.kept_sum(instance.scores, r, c) for r, c in candidates]
    if polish:  # only the best chain when out of time: the polish is O(m n) per round
        chosen = range(1, chains + 1) if not timed_out else [int(np.argmax(kept[1:])) + 1]
        polished = [best_response(instance, *candidates[i]) for i in chosen]
        info["polish_gain"] = float(max(kernels.kept_sum(instance.scores, r, c) for r, c in polished) - max(kept))
        candidates += polished
        kept += [kernels.kept_sum(instance.scores, r, c) for r, c in polished]
    best = int(np.argmax(kept))  # the first of the best: the start wins ties, then the lower chain
    iterations = sum(int(ch.counts[_DONE]) for ch in runs)
    accepted = sum(int(ch.counts[_ACCEPTED]) for ch in runs)
    info.update(accepted=accepted, acceptance_rate=accepted / max(iterations, 1))
    if instance.total - kept[best] < trace[-1][2]:
        trace.append((clock.elapsed(), iterations, instance.total - kept[best]))
    return make_result(instance, Solution(*candidates[best]), method=method, runtime=clock.elapsed(),
                       iterations=iterations, lower_bound=lower_bound, timed_out=timed_out, trace=trace,
                       seed=seed, info=info)


def _calibrated_t0(chain: _Chain, instance: Instance) -> float:
    """t0 at which the mean worsening proposal is accepted with probability START_ACCEPTANCE."""
    worse = chain.calibrate()
    floor = 1e-12 * max(instance.total / (instance.m * instance.n), 1e-300)
    return max(worse / math.log(1.0 / START_ACCEPTANCE), floor)


def local_annealing(instance: Instance, *, seed: int = 0, time_limit: float | None = None,
                    moves: int = 1_000_000, chains: int = 1, t0: float | None = None, t_end: float | None = None,
                    restarts: int = 0, start="greedy", polish: bool = True,
                    parallel: bool = False, progress: bool = False, precision: str = "auto") -> SolveResult:
    """Simulated annealing with swap and reshape moves and O(1) swap deltas; a heuristic.

    Guarantee: none on the optimality gap. The result is feasible and never costs more than the start
    solution (it is one of the candidates). With ``start="greedy"`` the result carries greedy B's
    a-posteriori lower bound (``info["lower_bound_source"]``); annealing itself proves nothing.

    Parameters
    ----------
    instance : Instance
    seed : int
        Chain ``i`` draws from a splitmix64 stream seeded by a hash of ``(seed, i)``: the same seed gives
        the same answer, however the moves are chunked and with ``parallel`` on or off.
    time_limit : float, optional
        Seconds, checked between chunks of moves (about 0.05 s each); the best solution so far is returned
        with status "time_limit".
    moves : int
        Proposals per chain, restarts included.
    chains : int
        Independent chains (each its own stream); the best wins, ties to the lower index.
    t0, t_end : float, optional
        Start and end temperature of the geometric cooling ``T <- T * (t_end / t0) ** (1 / run)`` per
        move. ``t0=None`` calibrates it per chain: 2000 proposals are drawn from the start and the mean
        kept-sum loss of the worsening ones is accepted with probability 1/2. ``t_end=None`` is
        ``t0 / 1000``.
    restarts : int
        The moves are split into ``restarts + 1`` equal runs; each later run reheats to ``t0`` from the
        chain's best solution.
    start : "greedy", "random" or Solution
        "greedy": greedy B (:func:`rcprune.solvers.matrix.greedy_row_column.greedy_row_column`) for every chain;
        "random": a random shape and random rows and columns per chain; or a feasible Solution. A budget-form
        start is first completed to a Pareto shape (:func:`make_maximal`), which never costs more.
    polish : bool
        Finish each chain's best with alternating exact best responses (:func:`best_response`).
    parallel : bool
        Run the chains in a thread pool (the numba loop releases the GIL).
    progress : bool
        Show a tqdm progress bar over the moves.
    precision : "auto", "float32" or "float64"
        The scores the chain's moves read. "float32": :attr:`rcprune.Instance.scores_float32`, half the
        memory traffic of an accepted swap (about 1.4x more moves per second on 512 x 4608), each score
        rounded by at most 2**-24 of itself, so moves whose deltas differ by less than that may be ranked
        the other way; "float64": the scores as given; "auto" (default): float32 when every non-zero
        score lies in float32's normal range, else float64. Sums are float64 either way, and the
        candidates are compared, and the cost reported, on the float64 scores.

    Returns
    -------
    SolveResult
        ``iterations``: moves over all chains; ``trace``: (seconds, moves so far, best cost) at each
        improvement, checked between chunks; ``info``: start, start_cost, precision, t0 and t_end
        (of chain 0), accepted, acceptance_rate, polish_gain, lower_bound_source.

    Notes
    -----
    A chain keeps its masks, kept-first permutations of the rows and columns (a uniform kept or pruned
    index in O(1)), and the restricted sums of :mod:`rcprune.matrix.kernels` (``row_sums`` over the kept columns,
    ``col_sums`` over the kept rows). Moves:

    * swap a kept row (column) with a pruned one, each of the r (m - r) + c (n - c) swap neighbours
      equally likely (rows with probability r (m - r) / (r (m - r) + c (n - c))): delta O(1), applied
      (when accepted) in O(n) (O(m));
    * budget form only, with probability min(5%, 32 / (m + n)): reshape to the next or previous Pareto
      shape (:func:`pareto_shapes`), greedily -- grow adds the pruned rows with the largest sums and drops
      the kept columns that keep the least with them; shrink drops the kept rows with the smallest sums and
      adds the pruned columns that keep the most. Delta O(m + k n) plus the selections (a heap when few of
      many, else quickselect; O(m + n) expected), cached until the state changes; applied in O(k n + d m)
      for k rows and d columns.

    Metropolis acceptance ``min(1, exp(delta / T))`` on the kept sum; a move worse than ``40 T`` is
    rejected without a draw. The restricted sums are recomputed exactly (O(m n)) every
    ``max(2**18, 4 m n)`` moves to bound floating-point drift. No allocation per move.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> res = local_annealing(inst, moves=2000)
    >>> res.solution, res.cost
    (Solution(rows=[0, 2], cols=[0, 2]), 4.0)
    """
    return _anneal(instance, seed=seed, time_limit=time_limit, moves=moves, chains=chains, t0=t0, t_end=t_end,
                   restarts=restarts, start=start, polish=polish, parallel=parallel,
                   progress=progress, impl="numba", method="annealing", precision=precision)


def local_annealing_numpy(instance: Instance, *, seed: int = 0, time_limit: float | None = None,
                          moves: int = 100_000, chains: int = 1, t0: float | None = None,
                          t_end: float | None = None, restarts: int = 0, start="greedy",
                          polish: bool = True, progress: bool = False,
                          precision: str = "auto") -> SolveResult:
    """The same chain as :func:`local_annealing` in a Python loop with numpy vector operations.

    A reference for tests and benchmarks: same random stream, same moves, same answer on integer scores
    (float sums may round differently). Sequential chains only.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> local_annealing_numpy(inst, moves=200).solution == local_annealing(inst, moves=200).solution
    True
    """
    return _anneal(instance, seed=seed, time_limit=time_limit, moves=moves, chains=chains, t0=t0, t_end=t_end,
                   restarts=restarts, start=start, polish=polish, parallel=False,
                   progress=progress, impl="numpy", method="annealing-numpy", precision=precision)


def move_stats(instance: Instance, moves: int = 1_000_000, seed: int = 0, impl: str = "numba",
               precision: str = "auto") -> dict:
    """Time one default chain (greedy B start, calibrated t0) over ``moves`` moves, the chain loop only.

    ``impl`` is "numba" or "numpy": both run the same moves on the same scores (``precision``, as in
    :func:`local_annealing`), so their rates compare like for like. Returns ``{"moves_per_second",
    "acceptance_rate", "seconds", "impl", "precision"}``; numba is compiled (or loaded from its cache)
    before the timing.
    """
    if impl not in ("numba", "numpy"):
        raise InvalidInstanceError(f"impl must be 'numba' or 'numpy', got {impl!r}")
    moves = check_int_option(moves, "moves", minimum=1)
    greedy = greedy_row_column(instance)
    rows, cols = make_maximal(instance, greedy.solution.rows, greedy.solution.cols)
    chains = [_Chain(instance, rows, cols, stream_seed(seed, i), impl, precision) for i in (0, 1)]
    for chain, length in zip(chains, (moves, 10)):
        start_t = _calibrated_t0(chain, instance)
        chain.schedule(start_t, start_t * T_END_RATIO, length, 0)
    chains[1].run(10)  # warm-up
    tic = time.perf_counter()
    chains[0].run(moves)
    seconds = time.perf_counter() - tic
    return {"moves_per_second": moves / seconds, "acceptance_rate": int(chains[0].counts[_ACCEPTED]) / moves,
            "seconds": seconds, "impl": impl, "precision": chains[0].precision}


def move_rate(instance: Instance, moves: int = 1_000_000, seed: int = 0, impl: str = "numba") -> float:
    """Moves per second of one default annealing chain: ``move_stats(...)["moves_per_second"]``.

    >>> import rcprune
    >>> move_rate(rcprune.Instance(np.ones((4, 6)), budget=8), moves=1000) > 0
    True
    """
    return move_stats(instance, moves, seed, impl)["moves_per_second"]
