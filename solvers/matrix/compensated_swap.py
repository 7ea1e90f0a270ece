"""Local search for data-aware RC, started from structured-OBS (the anchor): focused re-eliminations, then
column swaps and column-count changes.

Structured-OBS scores each column by its OBS error summed over every row, also the rows it then prunes.
First the elimination is re-run scoring only the rows the best (R, C) keeps, while that lowers the cost
(at most ``rounds`` times).

The kept columns C are a support shared by every row: one A = H_CC^-1, one M = H_:C A and one vector of
Schur complements s_q serve all rows, each row keeping its refit v_i and residual g_i = H (w_i - v_i).
With the kept rows R fixed, the exact change of the cost when column p (slot j, a = A_jj) leaves C and q
enters is sum_{i in R} [v_ip^2 / a - (g_iq + v_ip M_qj / a)^2 / (s_q + M_qj^2 / a)]
(:mod:`rcprune.retention.compensated`, summed over the rows), all k (n - k) swaps at once in
O(|R| k (n - k)); the best improving swap is applied to every row in O(m n + n k), then R is chosen again
(the rows of largest benefit), which can only lower the cost further. Dropping or adding one column
changes how many rows fit (⌊K / |C|⌋); its exact cost, with R chosen again, is scored for every column at
once from the same state (row i's error grows by v_ip^2 / a_p, or falls by g_iq^2 / s_q). Each step takes
the best of both kinds; it stops at a local optimum of both.
"""
from __future__ import annotations

import numpy as np

from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import check_int_option

from rcprune.solvers import check_objective
from rcprune.solvers.matrix.structured_obs import best_prefix, best_rows

__all__ = ["compensated_rc_swap", "SharedSupport", "resize_costs"]

TOLERANCE = 1e-10   # a swap must lower the cost by more than this share of the layer's energy
REFRESH = 64        # swaps between exact recomputations of the shared state


class SharedSupport:
    """Columns C (``slots``) kept by every row, with A = H_CC^-1, M = H_:C A, Schur complements, the
    rows' refits V and residuals G = (W - V) H; ``errors`` are the rows' post-refit errors on C."""

    def __init__(self, weights: np.ndarray, hessian: np.ndarray, cols: np.ndarray):
        self.w, self.h = weights, hessian
        self.slots = np.flatnonzero(cols)
        self.refresh()

    def refresh(self) -> None:
        w, h, s = self.w, self.h, self.slots
        self.a = np.linalg.inv(h[np.ix_(s, s)])
        self.mm = h[:, s] @ self.a
        self.schur = np.maximum(np.diag(h) - np.einsum("qk,qk->q", self.mm, h[:, s]), 0.0)
        self.schur[s] = 0.0
        self.v = np.zeros_like(w)
        self.v[:, s] = w @ self.mm
        self.g = (w - self.v) @ h
        self.g[:, s] = 0.0

    @property
    def errors(self) -> np.ndarray:
        return np.maximum(np.einsum("ij,ij->i", self.w, self.g), 0.0)   # (w - v) . g, g = 0 on C

    @property
    def cols(self) -> np.ndarray:
        keep = np.zeros(self.w.shape[1], dtype=bool)
        keep[self.slots] = True
        return keep

    def swap_deltas(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(deltas, pruned)``: the cost change over ``rows`` of every swap, shape (k, n - k)."""
        pruned = np.flatnonzero(~self.cols)
        diag = np.diag(self.a)
        vr = self.v[np.ix_(rows, self.slots)]
        gr = self.g[np.ix_(rows, pruned)]
        zt = self.mm[pruned].T / diag[:, None]          # M_qj / a_j, shape (k, n - k)
        vsq = (vr * vr).sum(axis=0)
        num = (gr * gr).sum(axis=0)[None, :] + 2 * zt * (vr.T @ gr) + zt * zt * vsq[:, None]
        den = self.schur[pruned][None, :] + zt * self.mm[pruned].T
        gain = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return (vsq / diag)[:, None] - gain, pruned

    def swap(self, j: int, q: int) -> None:
        """Column in slot ``j`` out, ``q`` in, for every row. O(m n + n k)."""
        h, s = self.h, self.slots
        p, a = s[j], self.a[j, j]
        colj, mj = self.a[:, j].copy(), self.mm[:, j].copy()
        step = self.v[:, p] / a
        self.v[:, s] -= np.outer(step, colj)
        self.v[:, p] = 0.0
        self.g += np.outer(step, mj)
        self.schur += mj * mj / a
        self.a -= np.outer(colj, colj) / a
        self.mm -= np.outer(mj, colj) / a
        self.a[j, :] = self.a[:, j] = 0.0
        self.mm[:, j] = 0.0
        sq = self.schur[q]
        t = self.mm[q].copy()
        u = self.mm @ h[s, q] - h[:, q]
        c = self.g[:, q] / sq
        self.v[:, s] -= np.outer(c, t)
        self.v[:, q] = c
        self.g += np.outer(c, u)
        self.schur -= u * u / sq
        self.a += np.outer(t, t) / sq
        self.a[:, j] = self.a[j, :] = -t / sq
        self.a[j, j] = 1.0 / sq
        self.mm += np.outer(u, t) / sq
        self.mm[:, j] = -u / sq
        s[j] = q
        self.g[:, s] = 0.0
        self.schur[s] = 0.0


def _cost_with_best_rows(instance: CompensatedInstance, errors: np.ndarray, n_cols: int) -> np.ndarray:
    """The cost of each column of ``errors`` (rows x candidates) with the best rows for ``n_cols`` (every
    row pruned when none fits)."""
    r = instance.rows_for(n_cols)
    if r == 0 or n_cols == 0:
        return np.full(errors.shape[1], float(instance.energies.sum()))
    benefit = instance.energies[:, None] - errors
    top = -np.partition(-benefit, r - 1, axis=0)[:r] if r < benefit.shape[0] else benefit
    return instance.energies.sum() - top.sum(axis=0)


def resize_costs(instance: CompensatedInstance, state: SharedSupport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(drop costs per kept slot, add costs per pruned column, pruned columns)``: the exact cost after
    dropping or adding each column, with the rows chosen again. O(m n log m)."""
    k = state.slots.size
    errors = state.errors
    diag = np.diag(state.a)
    drop = _cost_with_best_rows(instance, errors[:, None] + state.v[:, state.slots] ** 2 / diag[None, :], k - 1)
    pruned = np.flatnonzero(~state.cols)
    schur = state.schur[pruned]
    gain = np.divide(state.g[:, pruned] ** 2, schur[None, :], out=np.zeros((instance.m, pruned.size)),
                     where=schur[None, :] > 0)
    add = _cost_with_best_rows(instance, np.maximum(errors[:, None] - gain, 0.0), k + 1)
    return drop, add, pruned


def compensated_rc_swap(instance: CompensatedInstance, *, seed: int = 0, time_limit: float | None = None,
                        rounds: int = 3, max_moves: int | None = None) -> SolveResult:
    """Focused re-eliminations, then best-improvement column swaps and column-count changes from
    structured-OBS's (R, C), re-choosing R after each move (deterministic: ``seed`` is unused). Never above
    structured-OBS's cost; no approximation guarantee. O(rounds (n^3 + m n^2)) plus, per move,
    O(|R| k (n - k) + m n log m) to score and O(m n) (swap) or O(n k^2 + m n k) (resize) to apply.

    Parameters
    ----------
    rounds : int
        Re-eliminations scored over the kept rows (each while it improves).
    max_moves : int, optional
        Stop after this many improving moves (swaps and column-count changes).

    >>> import numpy as np, rcprune
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(6, 40)); x[1] += x[0]
    >>> inst = rcprune.Instance.from_layer(rng.laplace(size=(4, 6)), hessian=x @ x.T / 40, budget=8)
    >>> rcprune.solve(inst, method="compensated-rc-swap").cost <= rcprune.solve(inst, method="structured-obs").cost
    True
    """
    check_objective(instance, "compensated-rc-swap")
    limit = np.inf if max_moves is None else check_int_option(max_moves, "max_moves", minimum=0)
    rounds = check_int_option(rounds, "rounds", minimum=0)
    clock = Stopwatch(time_limit)
    (start_cost, rows, cols), steps = best_prefix(instance, clock)
    timed_out = steps < instance.n
    cost, used = start_cost, 0
    while used < rounds and not timed_out and rows.any():
        (c, r, k), steps = best_prefix(instance, clock, rows)
        timed_out = steps < instance.n
        if not c < cost:
            break
        cost, rows, cols, used = c, r, k, used + 1
    swaps = resizes = 0
    k = int(cols.sum())
    if 0 < k < instance.n and rows.any() and not timed_out:
        state = SharedSupport(instance.weights, instance.hessian, cols)
        tol = TOLERANCE * max(float(instance.energies.sum()), 1e-300)
        resizable = instance.fixed_shape is None
        current = cost
        while swaps + resizes < limit and not (timed_out := clock.expired()):
            deltas, pruned = state.swap_deltas(np.flatnonzero(rows))
            j, b = np.unravel_index(np.argmin(deltas), deltas.shape)
            step, move = float(deltas[j, b]), ("swap", int(j), int(pruned[b]))
            if resizable:
                drop, add, outside = resize_costs(instance, state)
                if k > 1 and drop.min() - current < step:
                    step, move = float(drop.min() - current), ("drop", int(np.argmin(drop)), -1)
                if k < instance.n - 1 and add.min() - current < step:
                    step, move = float(add.min() - current), ("add", -1, int(outside[np.argmin(add)]))
            if not step < -tol:
                break
            if move[0] == "swap":
                state.swap(move[1], move[2])
                swaps += 1
                if swaps % REFRESH == 0:
                    state.refresh()
            else:
                cols = state.cols
                if move[0] == "drop":
                    cols[state.slots[move[1]]] = False
                else:
                    cols[move[2]] = True
                state = SharedSupport(instance.weights, instance.hessian, cols)
                k = int(cols.sum())
                resizes += 1
            current, rows = best_rows(instance, state.errors, k)
        cols = state.cols
    return make_result(instance, Solution(rows, cols), method="compensated-rc-swap", runtime=clock.elapsed(),
                       iterations=swaps + resizes, seed=seed, timed_out=timed_out,
                       info={"swaps": swaps, "resizes": resizes, "rounds": used, "start_cost": start_cost, "columns": k,
                             "rows": int(rows.sum())})
