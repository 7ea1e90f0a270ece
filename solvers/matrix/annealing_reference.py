"""The annealing chain in Python with numpy vector operations: a reference for tests and move-rate benchmarks.

:class:`NumpyChain` makes the same moves as the numba kernel, draw for draw, from the same splitmix64
stream (:class:`rcprune.random_stream.NumpyStream`), on the same float32 or float64 scores; on integer
scores its sums, and so its answer, are the same bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from rcprune.matrix import kernels
from rcprune.random_stream import NumpyStream

from rcprune.solvers.matrix.annealing_chain import (ACCEPTED, BEST, C, CALIBRATION_SAMPLES, CUTOFF, DONE, KEPT,
                                                     R, TEMP, VERSION, Chain)
from rcprune.solvers.matrix.annealing_moves import COL_SWAP, GROW, ROW_SWAP, move_kind_numpy, reshape_delta_numpy

__all__ = ["NumpyChain"]


def _perm_swap(perm, pos, a, b):
    pa, pb = pos[a], pos[b]
    perm[pa], perm[pb] = b, a
    pos[a], pos[b] = pb, pa


class NumpyChain(Chain):
    """:class:`rcprune.solvers.matrix.annealing_chain.Chain`, run by a Python loop: O(1) Python steps per
    proposal, numpy vector operations for the O(m) and O(n) updates.

    >>> import rcprune
    >>> from rcprune.solvers.matrix.annealing_chain import Chain
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> chains = [cls(inst, np.array([True, True, False]), np.array([False, True, True]), 7)
    ...           for cls in (Chain, NumpyChain)]
    >>> for chain in chains:
    ...     chain.schedule(t0=2.0, t_end=0.02, total_moves=300, restarts=1)
    ...     chain.run(300)
    >>> all(np.array_equal(a, b) for a, b in zip(chains[0].state[2:], chains[1].state[2:]))
    True
    """

    def __init__(self, *args, **kwargs):
        self.cache: dict = {}  # reshape kind -> (state version, delta, moved rows, moved columns)
        super().__init__(*args, **kwargs)
        self.stream = NumpyStream(int(self.rng[0]))

    def load(self) -> None:
        for mask, perm, pos, slot in ((self.rows, self.row_perm, self.row_pos, R),
                                      (self.cols, self.col_perm, self.col_pos, C)):
            perm[:] = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
            pos[perm] = np.arange(perm.shape[0])
            self.counts[slot] = mask.sum()
        self.row_sums[:] = kernels.restricted_row_sums_reference(self.scores, self.cols)
        self.col_sums[:] = kernels.restricted_col_sums_reference(self.scores, self.rows)
        self.reals[KEPT] = self.col_sums[self.cols].sum()
        self.counts[VERSION] += 1

    def calibrate(self) -> float:
        deltas = np.array([self._propose()[5] for _ in range(CALIBRATION_SAMPLES)])
        worse = deltas[deltas < 0]
        self.rng[0] = self.stream.state_after_consumed()
        return float(-worse.mean()) if worse.size else 0.0

    def _propose(self):
        rng = self.stream
        m, n = self.scores.shape
        r, c = int(self.counts[R]), int(self.counts[C])
        shape = self.shape_index[r]
        kind = move_kind_numpy(len(self.shape_rows), shape, m, n, r, c, self.reshape_rate, rng)
        if kind == ROW_SWAP:
            out = self.row_perm[rng.below(r)]
            into = self.row_perm[r + rng.below(m - r)]
            return kind, out, into, None, None, float(self.row_sums[into] - self.row_sums[out])
        if kind == COL_SWAP:
            out = self.col_perm[rng.below(c)]
            into = self.col_perm[c + rng.below(n - c)]
            return kind, out, into, None, None, float(self.col_sums[into] - self.col_sums[out])
        if kind < 0:
            return kind, -1, -1, None, None, 0.0
        version = int(self.counts[VERSION])
        if self.cache.get(kind, (None,))[0] != version:
            other = shape + 1 if kind == GROW else shape - 1
            k, d = abs(int(self.shape_rows[other]) - r), abs(int(self.shape_cols[other]) - c)
            self.cache[kind] = (version, *reshape_delta_numpy(self.scores, kind == GROW, k, d, self.rows, self.cols,
                                                              self.row_sums, self.col_sums))
        _, delta, moved_rows, moved_cols = self.cache[kind]
        return kind, -1, -1, moved_rows, moved_cols, delta

    def _apply(self, kind, out, into, moved_rows, moved_cols):
        s, st = self.scores, self.scores_t
        r, c = int(self.counts[R]), int(self.counts[C])
        self.counts[VERSION] += 1
        if kind == ROW_SWAP:
            self.col_sums += s[into].astype(np.float64) - s[out]
            self.rows[out], self.rows[into] = False, True
            _perm_swap(self.row_perm, self.row_pos, out, into)
            return
        if kind == COL_SWAP:
            self.row_sums += st[into].astype(np.float64) - st[out]
            self.cols[out], self.cols[into] = False, True
            _perm_swap(self.col_perm, self.col_pos, out, into)
            return
        grow = kind == GROW
        sign = 1 if grow else -1
        self.col_sums += sign * s[moved_rows].sum(axis=0, dtype=np.float64)
        self.row_sums -= sign * st[moved_cols].sum(axis=0, dtype=np.float64)
        self.rows[moved_rows] = grow
        self.cols[moved_cols] = not grow
        for t, i in enumerate(moved_rows):
            _perm_swap(self.row_perm, self.row_pos, i, self.row_perm[r + t if grow else r - t - 1])
        for t, j in enumerate(moved_cols):
            _perm_swap(self.col_perm, self.col_pos, j, self.col_perm[c - t - 1 if grow else c + t])
        self.counts[R] = r + sign * len(moved_rows)
        self.counts[C] = c - sign * len(moved_cols)

    def run(self, chunk: int) -> None:
        """The numba kernel's loop, move for move."""
        rng, counts, reals = self.stream, self.counts, self.reals
        end = min(self.total_moves, int(counts[DONE]) + chunk)
        while counts[DONE] < end:
            kind, out, into, moved_rows, moved_cols, delta = self._propose()
            if kind < 0:
                counts[DONE] = self.total_moves
                break
            if delta >= 0.0 or (delta > -CUTOFF * reals[TEMP] and rng.uniform() < math.exp(delta / reals[TEMP])):
                self._apply(kind, out, into, moved_rows, moved_cols)
                reals[KEPT] += delta
                counts[ACCEPTED] += 1
                if reals[KEPT] > reals[BEST] + self.tol:
                    reals[BEST] = reals[KEPT]
                    self.best_rows[:] = self.rows
                    self.best_cols[:] = self.cols
            reals[TEMP] *= self.alpha
            counts[DONE] += 1
            done = int(counts[DONE])
            if done < self.total_moves and done % self.run_length == 0:
                self.rows[:] = self.best_rows
                self.cols[:] = self.best_cols
                self.load()
                reals[TEMP] = self.t0
            elif done % self.refresh == 0:
                self.load()
        self.rng[0] = rng.state_after_consumed()  # the numba chain's state at the same point
