"""One annealing chain: its state in arrays, and the numba kernel that runs it chunk by chunk.

The kernel takes four tuples, built once per chain by :class:`Chain`:

* ``data = (scores, scores_t, shape_rows, shape_cols, shape_index)``: what the chain reads;
* ``state = (row_axis, col_axis, best_rows, best_cols, counts, reals, rng)``: what it changes, an axis being
  ``(mask, perm, pos, sums)`` (:mod:`rcprune.solvers.matrix.annealing_moves`), ``counts`` and ``reals``
  the slots below, ``rng`` the splitmix64 state;
* ``scratch = (rval, rsel, val, csel, cache_version, cache_delta)``: the reshape selections, and each
  reshape side's cached delta with the state version it was computed at;
* ``params = (t0, alpha, tol, reshape_rate, run_length, refresh, total_moves)``.

A chain stops between chunks and resumes bit for bit: every quantity the loop carries is stored back.
"""
from __future__ import annotations

import math

import numpy as np

from rcprune.jit import jit
from rcprune.matrix import kernels
from rcprune.matrix.model import Instance
from rcprune.random_stream import random_uniform
from rcprune.validation import InvalidInstanceError

from rcprune.solvers.matrix.annealing_moves import (COL_SWAP, GROW, ROW_SWAP, apply_reshape, move_kind,
                                                     pareto_shapes, perm_swap, propose_swap, reshape_delta)

__all__ = ["Chain", "run_chain", "load_state", "resolve_precision", "PRECISIONS"]

_JIT = dict(nogil=True, error_model="numpy")

# Slots of ``counts`` (int64) and ``reals`` (float64).
R, C, DONE, ACCEPTED, VERSION = 0, 1, 2, 3, 4
KEPT, TEMP, BEST = 0, 1, 2

PRECISIONS = ("auto", "float32", "float64")  # the scores the chain reads (sums are float64 either way)
RESHAPE_BUDGET = 32          # reshape share of proposals: min(5%, 32 / (m + n)), as one costs O(m + n)
CUTOFF = 40.0                # moves worse than CUTOFF * T are rejected outright (p < 5e-18)
CALIBRATION_SAMPLES = 2000


@jit(**_JIT)
def load_state(scores, row_axis, col_axis, counts, reals):
    """Rebuild the kept-first permutations, the restricted sums and the kept sum from the masks. O(m n)."""
    for axis, slot in ((row_axis, R), (col_axis, C)):
        mask, perm, pos = axis[0], axis[1], axis[2]
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
    row_axis[3][:] = kernels.restricted_row_sums(scores, col_axis[0])
    col_axis[3][:] = kernels.restricted_col_sums(scores, row_axis[0])
    kept = 0.0
    for t in range(counts[C]):
        kept += col_axis[3][col_axis[1][t]]
    reals[KEPT] = kept
    counts[VERSION] += 1


@jit(**_JIT)
def run_chain(data, state, scratch, params, chunk, dry):
    """Run up to ``chunk`` more moves of the chain. O(1) per rejected swap, O(n) (O(m)) per accepted row
    (column) swap, O(m + n) expected per reshape whose delta is not cached, O(m n) per restart or refresh.

    With ``dry=True`` it only draws ``chunk`` proposals (nothing moves) and returns the mean kept-sum loss
    of the worsening ones (0 if none): the calibration of t0. The loop body is written out in full
    because every array passed to a non-inlined helper costs a reference-count round trip per call.
    """
    scores, scores_t, shape_rows, shape_cols, shape_index = data
    row_axis, col_axis, best_rows, best_cols, counts, reals, rng = state
    rows, row_perm, row_pos, row_sums = row_axis
    cols, col_perm, col_pos, col_sums = col_axis
    rval, rsel, val, csel, cache_version, cache_delta = scratch
    t0, alpha, tol, reshape_rate, run_length, refresh, total_moves = params
    m, n, n_shapes = rows.shape[0], cols.shape[0], shape_rows.shape[0]
    done, accepted = counts[DONE], counts[ACCEPTED]
    temp, kept, best = reals[TEMP], reals[KEPT], reals[BEST]
    until_restart, until_refresh = run_length - done % run_length, refresh - done % refresh
    worse_sum, worse_count = 0.0, 0
    for _ in range(chunk):
        if done >= total_moves and not dry:
            break
        r, c = counts[R], counts[C]
        shape = shape_index[r]
        kind = move_kind(n_shapes, shape, m, n, r, c, reshape_rate, rng)
        out, into, k, d = -1, -1, 0, 0
        if kind < 0:  # nothing can move: the chain is done
            done = total_moves
            break
        if kind == ROW_SWAP:
            out, into, delta = propose_swap(row_perm, r, row_sums, rng)
        elif kind == COL_SWAP:
            out, into, delta = propose_swap(col_perm, c, col_sums, rng)
        else:
            # A reshape is deterministic given the state: its delta is cached until the state changes.
            side = kind - GROW
            other = shape + 1 if kind == GROW else shape - 1
            k, d = abs(shape_rows[other] - r), abs(shape_cols[other] - c)
            if cache_version[side] != counts[VERSION]:
                cache_delta[side] = reshape_delta(scores, kind == GROW, k, d, r, c, row_axis, col_axis,
                                                  (rval, rsel[side], val, csel[side]))
                cache_version[side] = counts[VERSION]
            delta = cache_delta[side]
        if dry:
            if delta < 0.0:
                worse_sum -= delta
                worse_count += 1
            continue
        if delta >= 0.0 or (delta > -CUTOFF * temp and random_uniform(rng, 0) < math.exp(delta / temp)):
            if kind == ROW_SWAP:
                kernels.apply_row_swap(scores, rows, col_sums, out, into)
                perm_swap(row_perm, row_pos, out, into)
            elif kind == COL_SWAP:
                kernels.apply_col_swap(scores_t, cols, row_sums, out, into)
                perm_swap(col_perm, col_pos, out, into)
            else:
                side = kind - GROW
                apply_reshape(scores, scores_t, kind == GROW, r, c, row_axis, col_axis, rsel[side][:k],
                              csel[side][:d])
                counts[R] = r + k if kind == GROW else r - k
                counts[C] = c - d if kind == GROW else c + d
            counts[VERSION] += 1
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
                load_state(scores, row_axis, col_axis, counts, reals)
                kept = reals[KEPT]
    if dry:
        return worse_sum / worse_count if worse_count else 0.0
    counts[DONE], counts[ACCEPTED] = done, accepted
    reals[TEMP], reals[KEPT], reals[BEST] = temp, kept, best
    return 0.0


def resolve_precision(instance: Instance, precision) -> str:
    """The scores a chain reads: "float32" copies when asked or, for "auto", when every score fits.

    >>> import rcprune
    >>> resolve_precision(rcprune.Instance([[1.0, 2.0]], budget=1), "auto")
    'float32'
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidInstanceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float64" or (precision == "auto" and instance.scores_float32 is None):
        return "float64"
    if instance.scores_float32 is None:
        raise InvalidInstanceError("precision='float32': a non-zero score lies outside float32's normal range "
                                   f"[{np.finfo(np.float32).tiny:.3g}, {np.finfo(np.float32).max:.3g}]; "
                                   "use precision='auto' or 'float64'")
    return "float32"


class Chain:
    """All state of one chain in arrays, run by the numba kernel :func:`run_chain`.

    ``rows``, ``cols`` must be a Pareto shape (:func:`pareto_shapes`). Construction is O(m n) time and
    memory (the float32 copies, when read); each chunk allocates nothing.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> chain = Chain(inst, np.array([True, True, False]), np.array([False, True, True]), rng_state=1)
    >>> float(chain.reals[KEPT])
    5.0
    >>> chain.schedule(t0=1.0, t_end=0.01, total_moves=500, restarts=0)
    >>> chain.run(500)
    >>> chain.done, int(chain.counts[DONE]), float(chain.reals[BEST]) > 5.0
    (True, 500, True)
    """

    def __init__(self, instance: Instance, rows: np.ndarray, cols: np.ndarray, rng_state: int,
                 precision: str = "auto"):
        m, n = instance.m, instance.n
        self.precision = resolve_precision(instance, precision)
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
        self.counts = np.zeros(5, np.int64)
        self.reals = np.zeros(3)
        self.rng = np.array([rng_state], dtype=np.uint64)
        self.t0 = self.alpha = 1.0
        self.run_length, self.total_moves = 1, 0
        self.row_axis = (self.rows, self.row_perm, self.row_pos, self.row_sums)
        self.col_axis = (self.cols, self.col_perm, self.col_pos, self.col_sums)
        self.load()
        r, c = self.counts[R], self.counts[C]
        if self.shape_index[r] < 0 or self.shape_cols[self.shape_index[r]] != c:
            raise AssertionError("a chain must start from a Pareto shape")
        self.best_rows, self.best_cols = self.rows.copy(), self.cols.copy()
        self.reals[BEST] = self.reals[KEPT]
        self.data = (self.scores, self.scores_t, self.shape_rows, self.shape_cols, self.shape_index)
        self.state = (self.row_axis, self.col_axis, self.best_rows, self.best_cols, self.counts, self.reals,
                      self.rng)
        self.scratch = (np.empty(m), np.empty((2, m), np.int64), np.empty(n), np.empty((2, n), np.int64),
                        np.full(2, -1, np.int64), np.zeros(2))

    def load(self) -> None:
        """Recompute the permutations and sums from the masks. O(m n)."""
        load_state(self.scores, self.row_axis, self.col_axis, self.counts, self.reals)

    def schedule(self, t0: float, t_end: float, total_moves: int, restarts: int) -> None:
        """Cool geometrically from t0 to t_end over each of ``restarts + 1`` equal runs."""
        self.t0, self.t_end, self.total_moves = t0, t_end, total_moves
        self.run_length = max(1, total_moves // (restarts + 1))
        self.alpha = (t_end / t0) ** (1.0 / self.run_length)
        self.reals[TEMP] = t0

    @property
    def params(self) -> tuple:
        return (float(self.t0), float(self.alpha), float(self.tol), float(self.reshape_rate),
                int(self.run_length), int(self.refresh), int(self.total_moves))

    @property
    def done(self) -> bool:
        return bool(self.counts[DONE] >= self.total_moves)

    def calibrate(self) -> float:
        """Mean kept-sum loss of the worsening ones among CALIBRATION_SAMPLES proposals from the current
        state (0 if none); nothing moves, the stream advances."""
        return run_chain(self.data, self.state, self.scratch, self.params, CALIBRATION_SAMPLES, True)

    def run(self, chunk: int) -> None:
        """Run up to ``chunk`` more moves."""
        run_chain(self.data, self.state, self.scratch, self.params, chunk, False)
