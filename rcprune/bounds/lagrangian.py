"""Lagrangian decomposition bound: split the scores between a row view, a column view and a spectral rest.

For a shape (r, c) and any split s = A + B + E (entries of A, B, E may be negative),

    sum_{R x C} s = sum_{R x C} A + sum_{R x C} B + 1_R^T E 1_C
                 <= RV_{r,c}(A) + CV_{r,c}(B) + sigma_1(E) sqrt(r (1 - r/m) c (1 - c/n)) [E doubly centred],

with RV_{r,c}(A) = sum of the r largest row values top_c(A_i.) (the best r rows, each keeping its best
c entries) and CV_{r,c}(B) the same on columns. Every split gives a valid upper bound on the kept sum of
the shape, so every iterate is valid. With ``spectral=False`` E = 0 (the plain decomposition s = a + b of
the issue): its start a = s or b = s is the top-k bound. With ``spectral=True`` the split is
parametrized by free (A, B): D = s - A - B, E = D doubly centred, its row means moved into A and its
column effects into B; the start A = B = 0 is the spectral bound. The bound is a convex, piecewise
smooth function of (A, B); it is minimized by subgradient steps (Polyak step towards the incumbent's kept
sum, halved when the bound stalls). sigma_1(E) is tracked by warm-started power iteration to choose the
steps, and certified (``spectral_norm_upper``) for every value reported, so only certified values count.
Cost: O(m n) per iteration (numba selection of the top c per row and top r per column).
"""
from __future__ import annotations


import numpy as np

from rcprune.jit import jit
from rcprune.matrix.kernels import select_largest
from rcprune.matrix.model import Instance
from rcprune.result import Stopwatch
from rcprune.validation import InvalidInstanceError

from rcprune.bounds.shapes import BoundResult, safety_margin
from rcprune.bounds.spectral import spectral_norm_upper
from rcprune.bounds.topk import topk_table

__all__ = ["lagrangian_shape", "lagrangian_bound", "row_view"]


@jit
def _row_view(a, r, c, mask):
    """RV_{r,c}(a) and a maximizer: mask[i, j] = 1 on the chosen r rows' top-c entries, else 0."""
    m, n = a.shape
    buf = np.empty(n)
    row_top = np.empty(m)
    thresh = np.empty(m)
    for i in range(m):
        for j in range(n):
            buf[j] = a[i, j]
        t = select_largest(buf, c)
        thresh[i] = t
        s = 0.0
        above = 0
        for j in range(n):
            if a[i, j] > t:
                s += a[i, j]
                above += 1
        row_top[i] = s + (c - above) * t
    rowbuf = row_top.copy()
    tr = select_largest(rowbuf, r)
    taken = 0
    total = 0.0
    for i in range(m):
        for j in range(n):
            mask[i, j] = 0.0
    for phase in range(2):
        for i in range(m):
            pick = row_top[i] > tr if phase == 0 else (row_top[i] == tr and taken < r)
            if pick:
                taken += 1
                total += row_top[i]
                t = thresh[i]
                got = 0
                for j in range(n):
                    if a[i, j] > t:
                        mask[i, j] = 1.0
                        got += 1
                for j in range(n):
                    if got < c and a[i, j] == t:
                        mask[i, j] = 1.0
                        got += 1
    return total


def row_view(a: np.ndarray, r: int, c: int) -> tuple[float, np.ndarray]:
    """``(RV, mask)``: the best r rows each keeping its c largest entries of ``a`` (any sign).

    >>> value, mask = row_view(np.array([[3.0, -1.0], [0.0, 2.0]]), 1, 1)
    >>> value, mask.tolist()
    (3.0, [[1.0, 0.0], [0.0, 0.0]])
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    mask = np.empty_like(a)
    return float(_row_view(a, int(r), int(c), mask)), mask


class _Split:
    """Evaluates the decomposition bound of one shape at (A, B) and its subgradient."""

    def __init__(self, instance: Instance, r: int, c: int, spectral: bool):
        self.s = instance.scores
        self.m, self.n = instance.m, instance.n
        self.r, self.c, self.spectral = r, c, spectral
        self.spread = np.sqrt(max(r * (1 - r / self.m), 0.0) * max(c * (1 - c / self.n), 0.0))
        self.v = np.ones(self.n) / np.sqrt(self.n)

    def parts(self, a, b):
        if not self.spectral:
            return a, b, None, 0.0
        d = self.s - a - b
        rowmean, colmean = d.mean(axis=1), d.mean(axis=0)
        mu = float(rowmean.mean())
        e = d - rowmean[:, None] - colmean[None, :] + mu
        slack = ((self.r / self.m) * float(np.abs(e.sum(axis=0)).sum()) + (self.c / self.n) *
                 float(np.abs(e.sum(axis=1)).sum()) + self.r * self.c / (self.m * self.n) * abs(float(e.sum())))
        return a + rowmean[:, None], b + (colmean - mu)[None, :], e, slack

    def evaluate(self, a, b, certify: bool):
        """(value, subgradient wrt a, subgradient wrt b, certified)."""
        ap, bp, e, slack = self.parts(a, b)
        rv, x = row_view(ap, self.r, self.c)
        cv, yt = row_view(bp.T, self.c, self.r)
        y = yt.T
        value = rv + cv
        ga, gb = x.copy(), y.copy()
        if e is not None:
            for _ in range(3):  # warm-started power iteration on E^T E
                u = e @ self.v
                w = e.T @ u
                norm = np.linalg.norm(w)
                if norm == 0:
                    break
                self.v = w / norm
            u = e @ self.v
            sigma = float(np.linalg.norm(u))
            if certify:
                sigma = max(sigma, spectral_norm_upper(e))
            value += sigma * self.spread + slack
            xr = x.sum(axis=1) / self.n
            yc = y.sum(axis=0) / self.m
            common = -xr[:, None] - yc[None, :] + y.sum() / (self.m * self.n)
            ga += common
            gb += common
            if sigma > 0:
                uv = np.outer(u / sigma, self.v) * self.spread
                ga -= uv
                gb -= uv
        else:
            ga, gb = x - y, y - x  # b = s - a: only a is free; gb unused
        return value, ga, gb, certify or e is None


def lagrangian_shape(instance: Instance, r: int, c: int, *, time_limit: float | None = None,
                     target: float | None = None, max_iterations: int = 200, spectral: bool = True,
                     certify_every: int | None = None, trace: list | None = None) -> float:
    """A certified upper bound on the kept sum of every solution with exactly r rows and c columns.

    Parameters
    ----------
    instance : Instance
    r, c : int
        The shape (1 <= r <= m, 1 <= c <= n).
    time_limit : float, optional
    target : float, optional
        A kept sum the bound need not go below (the incumbent's): the Polyak step aims at it and the
        run stops once the bound reaches it.
    max_iterations : int
    spectral : bool
        Include the spectral rest E (default) or use the plain split s = a + b.
    certify_every : int, optional
        Certify sigma_1 every this many iterations (default: every iteration on matrices of up to 20000
        entries, else every 10); the returned value is the best certified one.
    trace : list, optional
        Receives (iteration, certified bound) for every certified iterate.

    >>> import rcprune
    >>> inst = rcprune.Instance([[4, 1], [0, 3]], budget=2)
    >>> lagrangian_shape(inst, 1, 2, spectral=False) >= 5.0
    True
    """
    m, n = instance.m, instance.n
    if not (1 <= r <= m and 1 <= c <= n):
        raise InvalidInstanceError(f"shape ({r}, {c}) is outside the {m} x {n} matrix")
    clock = Stopwatch(time_limit)
    if certify_every is None:
        certify_every = 1 if m * n <= 20000 else 10
    split = _Split(instance, int(r), int(c), spectral)
    s = instance.scores
    if spectral:
        a, b = np.zeros_like(s), np.zeros_like(s)
    else:
        ra, _ = row_view(s, r, c)
        ca, _ = row_view(s.T, c, r)
        a = s.copy() if ra <= ca else np.zeros_like(s)
        b = s - a
    best_cert = np.inf
    best_approx, best_ab = np.inf, None
    step_scale, stall = 1.0, 0
    goal = -np.inf if target is None else float(target)
    for it in range(max_iterations):
        cert = (it % certify_every == 0)
        value, ga, gb, certified = split.evaluate(a, b, cert)
        if certified:
            if value < best_cert:
                best_cert = value
                if trace is not None:
                    trace.append((it, value))
        if value < best_approx - 1e-12 * abs(value):
            best_approx, best_ab, stall = value, (a, b), 0
        else:
            stall += 1
            if stall >= 5:
                step_scale, stall = step_scale / 2, 0
        if best_cert <= goal or clock.expired() or step_scale < 1e-4:
            break
        if spectral:
            norm2 = float((ga * ga).sum() + (gb * gb).sum())
        else:
            norm2 = float((ga * ga).sum())
        if norm2 == 0:
            break
        aim = goal if np.isfinite(goal) else 0.98 * best_approx
        t = step_scale * max(value - aim, 1e-3 * abs(value)) / norm2
        a = a - t * ga
        b = b - t * gb if spectral else s - a
    if best_ab is not None and best_approx < best_cert:
        value, *_ = split.evaluate(best_ab[0], best_ab[1], True)
        if value < best_cert:
            best_cert = value
            if trace is not None:
                trace.append((-1, value))
    return float(best_cert)


def lagrangian_bound(instance: Instance, *, time_limit: float | None = None, incumbent: float | None = None,
                     spectral: bool = True, max_iterations: int = 200) -> BoundResult:
    """OPT >= total - max over maximal shapes of the Lagrangian bound, weakest shapes refined first.

    Shapes start at the top-k bound; within the time limit the shapes are refined in order of increasing
    cost bound (each a valid bound at every iterate). With an incumbent cost, refinement of a shape stops
    once its bound reaches the incumbent.

    >>> import rcprune
    >>> inst = rcprune.Instance([[4, 1], [0, 3]], budget=2)
    >>> round(lagrangian_bound(inst).bound, 9)
    3.0
    """
    clock = Stopwatch(time_limit)
    table = topk_table(instance)
    upper = table.kept_upper.copy()
    margin = safety_margin(instance)
    goal = None if incumbent is None else instance.total - incumbent
    trace = [(clock.elapsed(), 0, float(max(instance.total - upper.max() - margin, 0.0)))]
    done = 0
    for k in np.argsort(-upper, kind="stable"):
        if clock.expired():
            break
        if goal is not None and upper[k] <= goal:
            continue
        left = len(upper) - done
        slice_s = None if time_limit is None else max(clock.remaining() / left, 0.0)
        value = lagrangian_shape(instance, int(table.rows[k]), int(table.cols[k]), time_limit=slice_s,
                                 target=goal, spectral=spectral, max_iterations=max_iterations)
        upper[k] = min(upper[k], value)
        done += 1
        trace.append((clock.elapsed(), done, float(max(instance.total - upper.max() - margin, 0.0))))
    lows = np.maximum(instance.total - upper - margin, 0.0)
    bound = float(lows.min())
    k = int(np.argmin(lows))
    proof = (f"Lagrangian decomposition bound: for each maximal shape (r, c), kept <= RV(A) + CV(B) "
             f"{'+ sigma_1(E) sqrt(r(1-r/m)c(1-c/n)) ' if spectral else ''}for a split s = A + B"
             f"{' + E' if spectral else ''} optimized by subgradient steps ({done} of {len(upper)} shapes "
             f"refined, the others at the top-k bound); the weakest shape is ({int(table.rows[k])}, "
             f"{int(table.cols[k])}), so OPT >= {bound:.10g}")
    return BoundResult(bound, "lagrangian", proof, [(int(a), int(b), float(v)) for a, b, v in
                                                    zip(table.rows, table.cols, lows)],
                       clock.elapsed(), done, trace, info={"spectral": spectral})
