"""Local search with exact swap deltas on the compensated objective, started from OBC (as CHITA and
OSSCAR refine a one-shot mask).

Every row keeps its support with H_SS^-1 and its refit (:class:`rcprune.retention.compensated.RowSupport`);
all |S| (n - |S|) swaps of a row are scored exactly at once, and the best improving one is applied, until
no swap improves. A layer budget also moves a kept weight from one row to another (remove the cheapest
in row a, add the best in row b: the two rows' deltas are independent, so the move's delta is exact).
It starts from OBC's mask, so its error is never above OBC's.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.compensated import RowSupport
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask
from rcprune.validation import InvalidInstanceError, check_int_option

from rcprune.solvers import check_objective
from rcprune.solvers.retention.obc import obc_mask

__all__ = ["retention_swap", "descend", "STARTS"]

STARTS = ("obc", "magnitude")
TOLERANCE = 1e-10   # a move must lower the row's error by more than this share of the row's energy w^T H w
REFRESH = 64        # updates of a row between exact recomputations of its inverse and refit


class _Row:
    """One row's support and its best moves: within-row swap, removal, addition."""

    def __init__(self, w, h, keep):
        self.support = RowSupport(w, h, keep)
        self.tol = TOLERANCE * max(float(w @ h @ w), 1e-300)
        self.updates = 0
        self.score()

    def score(self) -> None:
        s = self.support
        n, k = s.w.shape[0], s.kept.size
        self.swap = self.remove = self.add = (np.inf, -1, -1)
        if 0 < k < n:
            deltas, kept, pruned = s.swap_deltas()
            a, b = np.unravel_index(np.argmin(deltas), deltas.shape)
            self.swap = (float(deltas[a, b]), int(kept[a]), int(pruned[b]))
        if k > 0:
            rem = s.removal_deltas()
            self.remove = (float(rem.min()), int(s.kept[np.argmin(rem)]), -1)
        if k < n:
            pruned = s.pruned
            add = s.addition_deltas(pruned)
            self.add = (float(add.min()), -1, int(pruned[np.argmin(add)]))

    def apply(self, p: int = -1, q: int = -1) -> None:
        if p >= 0:
            self.support.remove(p)
        if q >= 0:
            self.support.add(q)
        self.updates += 1
        if self.updates % REFRESH == 0:
            self.support.refresh()
        self.score()


def _best_transfer(rows: list[_Row]) -> tuple[float, int, int]:
    """The best (delta, from row, to row) of moving one kept weight between two different rows."""
    rem = np.array([r.remove[0] for r in rows])
    add = np.array([r.add[0] for r in rows])
    if len(rows) < 2:
        return np.inf, -1, -1
    top2 = np.argsort(add, kind="stable")[:2]
    best = (np.inf, -1, -1)
    for a in np.flatnonzero(np.isfinite(rem)):
        b = top2[0] if top2[0] != a else top2[1]
        d = rem[a] + add[b]
        if d < best[0]:
            best = (float(d), int(a), int(b))
    return best


def descend(instance: RetentionInstance, keep: np.ndarray, *, clock: Stopwatch, max_moves: int | None = None,
            progress: bool = False) -> tuple[np.ndarray, int, bool]:
    """Apply the best improving swap (or, with a layer budget, transfer between rows) until none is left:
    ``(mask, moves, timed out)``."""
    keep = keep.copy()
    timed_out = False
    moves = 0
    limit = np.inf if max_moves is None else max_moves
    w, h = instance.weights, instance.hessian
    bar = tqdm(total=instance.m, desc="swap rows", disable=not progress, leave=False)
    if instance.scope == "row":
        for i in range(instance.m):
            row = _Row(w[i], h, keep[i])
            while moves < limit and row.swap[0] < -row.tol and not (timed_out := timed_out or clock.expired()):
                row.apply(row.swap[1], row.swap[2])
                moves += 1
            keep[i] = row.support.mask
            bar.update()
    else:
        rows = []
        for i in range(instance.m):
            if timed_out := clock.expired():
                bar.close()
                return keep, 0, True
            rows.append(_Row(w[i], h, keep[i]))
            bar.update()
        while moves < limit and not (timed_out := timed_out or clock.expired()):
            within = min(range(len(rows)), key=lambda i: rows[i].swap[0])
            transfer = _best_transfer(rows)
            if rows[within].swap[0] <= transfer[0]:
                if not rows[within].swap[0] < -rows[within].tol:
                    break
                rows[within].apply(rows[within].swap[1], rows[within].swap[2])
            else:
                a, b = transfer[1], transfer[2]
                if not transfer[0] < -max(rows[a].tol, rows[b].tol):
                    break
                rows[a].apply(p=rows[a].remove[1])
                rows[b].apply(q=rows[b].add[2])
            moves += 1
        keep = np.array([r.support.mask for r in rows])
    bar.close()
    return keep, moves, timed_out


def retention_swap(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                   progress: bool = False, start: str = "obc", max_moves: int | None = None) -> SolveResult:
    """Best-improvement swap search on the compensated objective (deterministic: ``seed`` is unused).

    A local optimum for single swaps (and, with a layer budget, single transfers between rows); its error
    is at most the start's (OBC's by default). No approximation guarantee. Each pass scores a row's
    swaps in O(n k^2) and applies one in O(n k); the number of improving moves is not bounded a priori
    (``max_moves`` and ``time_limit`` cap it).

    Parameters
    ----------
    start : {"obc", "magnitude"}
        The mask to improve.
    max_moves : int, optional
        Stop after this many improving moves in all.

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> inst = rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0)
    >>> res = retention_swap(inst, start="magnitude")    # from magnitude's (1.0, 0.8): one swap
    >>> res.solution.mask.tolist(), round(res.cost, 4), res.iterations
    ([[True, False, True]], 0.1216, 1)
    """
    check_objective(instance, "compensated-swap")
    if start not in STARTS:
        raise InvalidInstanceError(f"start must be one of {STARTS}, got {start!r}")
    if max_moves is not None:
        max_moves = check_int_option(max_moves, "max_moves", minimum=0)
    clock = Stopwatch(time_limit)
    if start == "obc":
        keep, timed_out = obc_mask(instance, clock=clock, progress=progress)
    else:
        keep, timed_out = magnitude_mask(instance), False
    keep, moves, stopped = descend(instance, keep, clock=clock, max_moves=max_moves, progress=progress)
    timed_out = timed_out or stopped
    return make_result(instance, RetentionSolution(keep), method="compensated-swap", runtime=clock.elapsed(),
                       iterations=moves, seed=seed, timed_out=timed_out, info={"start": start, "moves": moves})
