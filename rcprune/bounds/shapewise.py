"""Shape-wise pruning: cheap bounds on every shape, then effort only where the optimum may still be.

OPT = min over maximal shapes of OPT(r, c) (the best cost with exactly r rows and c columns; see
:mod:`rcprune.bounds.shapes`), so any per-shape lower bounds L(r, c) <= OPT(r, c) give OPT >= min L.
Start from the entry-wise best of the top-k and spectral tables. A shape with L(r, c) >= the cost of a
known feasible solution (the incumbent) cannot hold a better solution: it is discarded. The remaining
shapes, weakest first, get a stronger bound: an exact solve of the fixed-shape instance (enumeration
when min(m, n) is small, CP-SAT on small matrices), whose optimum, or proven bound when stopped by the
time limit, is L(r, c) itself; otherwise the Lagrangian decomposition bound of :mod:`.lagrangian`,
then, once every live shape has it and time is left, (opt-in, ``cpsat_max_entries``) by CP-SAT on the
shapes still below the incumbent, weakest first. CP-SAT gets the current L(r, c) as the
cut kept <= total - L(r, c) and the incumbent as a cutoff (only solutions of cost <= incumbent are
searched): infeasibility proves OPT(r, c) > incumbent, which is all the minimum over shapes needs, and
only CP-SAT's proven bound (never its incumbent) raises L(r, c). Exact solves also improve the
incumbent, which discards more shapes. Every step only raises some L(r, c) to another valid value, so
the bound is valid whenever the time limit stops it.
"""
from __future__ import annotations


import numpy as np

from rcprune.matrix.model import Instance
from rcprune.result import Stopwatch
from rcprune.validation import check_int_option

from rcprune.bounds.lagrangian import lagrangian_shape
from rcprune.bounds.shapes import BoundResult, safety_margin
from rcprune.bounds.spectral import spectral_table
from rcprune.bounds.topk import topk_table

__all__ = ["shapewise_bound", "EXACT_MAX_SIDE", "CPSAT_MAX_ENTRIES"]

EXACT_MAX_SIDE = 16  # enumeration of 2^min(m, n) subsets per shape
CPSAT_MAX_ENTRIES = 256  # CP-SAT per shape on m * n <= this many entries


def shapewise_bound(instance: Instance, incumbent: float, *, time_limit: float | None = None, seed: int = 0,
                    exact=None, lagrangian: bool = True, cpsat_max_entries: int = CPSAT_MAX_ENTRIES) -> BoundResult:
    """Lower bound by per-shape bounds, discarding shapes that cannot beat the incumbent.

    Parameters
    ----------
    instance : Instance
    time_limit : float, optional
        Seconds for the refinement phase (the cheap tables always run to completion).
    incumbent : float
        Cost of a known feasible solution (e.g. the better of greedy B and its mirror).
    seed : int
        For CP-SAT.
    exact : optional
        The exact per-shape solves, an object with ``enumerate(instance, r, c, time_limit) -> (bound, cost)``
        and ``cpsat(instance, r, c, low, incumbent, seed, time_limit) -> (bound, cost, status)``
        (:class:`rcprune.solvers.matrix.exact_shapes.ExactShapes`); ``None``: bounds only, no exact solves.
        The bound stays a pure function of the instance; the solvers come from the caller.
    lagrangian : bool
        Allow the Lagrangian refinement.
    cpsat_max_entries : int
        CP-SAT per shape on matrices of m * n <= this many entries when enumeration does not fit: alone
        up to :data:`CPSAT_MAX_ENTRIES`; above, in a second pass after every live shape has its Lagrangian
        bound (the cut), with what is left of the time limit. Its model has 3 m n constraints, built in
        Python, and its LP bound is weak on wide shapes: raise it for matrices of a few thousand entries
        with seconds per shape to spare.

    Returns
    -------
    BoundResult
        ``per_shape``: the final L(r, c); ``info``: ``incumbent``, ``shapes``, ``discarded`` (shapes
        discarded by the cheap tables), ``refined`` (list of (r, c, how)), ``cpsat`` (one dict per CP-SAT
        run: r, c, status, seconds, bound before and after, closed = the shape reached the incumbent).

    Notes
    -----
    Cheap tables: O(m n log(m n) + min(m,n)^2 max(m,n)). Each refinement is an exact solve (exponential
    in min(m, n), so only for small sides) or a Lagrangian run (O(m n) per iteration).

    >>> import rcprune
    >>> res = shapewise_bound(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2), incumbent=6.0)
    >>> round(res.bound, 9) <= 5.0, res.info["incumbent"]
    (True, 6.0)
    """
    cpsat_max_entries = check_int_option(cpsat_max_entries, "cpsat_max_entries", minimum=0)
    clock = Stopwatch(time_limit)
    table = topk_table(instance).combine(spectral_table(instance))
    lows = table.cost_lower(instance)
    best_cost = float(incumbent)
    trace = [(clock.elapsed(), 0, float(min(lows.min(), best_cost)))]
    discarded = int(np.sum(lows >= best_cost))
    refined: list = []
    cpsat_runs: list = []
    entries = instance.m * instance.n
    enumerate_ok = exact is not None and min(instance.m, instance.n) <= EXACT_MAX_SIDE
    cpsat_ok = exact is not None and not enumerate_ok and entries <= cpsat_max_entries
    cpsat_first = cpsat_ok and (entries <= CPSAT_MAX_ENTRIES or not lagrangian)

    def run_cpsat(k: int, r: int, c: int, slice_s) -> None:
        nonlocal best_cost
        before, started = float(lows[k]), clock.elapsed()
        low, cost, status = exact.cpsat(instance, r, c, lows[k], best_cost, seed, slice_s)
        lows[k] = max(lows[k], low - safety_margin(instance))
        best_cost = min(best_cost, cost)
        cpsat_runs.append({"r": r, "c": c, "status": status, "seconds": clock.elapsed() - started,
                           "before": before, "after": float(lows[k]),
                           "closed": bool(status in ("OPTIMAL", "INFEASIBLE") or lows[k] >= best_cost)})

    done = np.zeros(lows.shape[0], dtype=bool)
    cpsat_done = np.zeros(lows.shape[0], dtype=bool)
    iterations = 0
    while not clock.expired():
        alive = np.flatnonzero(~done & (lows < best_cost))
        second = alive.size == 0  # every live shape has its Lagrangian bound: CP-SAT with it as the cut
        if second:
            if not cpsat_ok or cpsat_first:
                break
            alive = np.flatnonzero(~cpsat_done & (lows < best_cost))
            if alive.size == 0:
                break
        k = int(alive[np.argmin(lows[alive])])
        r, c = int(table.rows[k]), int(table.cols[k])
        remaining = clock.remaining()
        # the weakest shape limits the bound: it gets a third of what is left
        slice_s = None if remaining == float("inf") else remaining / min(alive.size, 3)
        how = None
        if second:
            run_cpsat(k, r, c, slice_s)
            cpsat_done[k] = True
        elif enumerate_ok:
            low, cost = exact.enumerate(instance, r, c, slice_s)
            lows[k] = max(lows[k], low - safety_margin(instance))
            best_cost = min(best_cost, cost)
            how = "exact"
        elif cpsat_first:
            run_cpsat(k, r, c, slice_s)
            how = "exact"
        elif lagrangian:
            res = lagrangian_shape(instance, r, c, time_limit=slice_s, target=instance.total - best_cost)
            lows[k] = max(lows[k], instance.total - res - safety_margin(instance))
            how = "lagrangian"
        done[k] = True
        iterations += 1
        if how is not None:
            refined.append((r, c, how))
        trace.append((clock.elapsed(), iterations, float(min(lows.min(), best_cost))))
    bound = float(max(min(lows.min(), best_cost), 0.0))
    wr, wc = (int(table.rows[np.argmin(lows)]), int(table.cols[np.argmin(lows)]))
    proof = (f"shape-wise bound: OPT = min over the {lows.size} maximal shapes of the best cost of that shape; "
             f"per-shape bounds from the top-k and spectral tables ({discarded} shapes reach the incumbent "
             f"{best_cost:.10g} and are discarded), {len(refined)} shapes refined "
             f"({sum(h == 'exact' for *_, h in refined)} solved exactly, the rest by the Lagrangian bound), "
             f"{len(cpsat_runs)} CP-SAT runs with the shape's bound as a cut and the incumbent as a cutoff; "
             f"the weakest shape is ({wr}, {wc}), so OPT >= {bound:.10g}")
    per_shape = [(int(a), int(b), float(v)) for a, b, v in zip(table.rows, table.cols, lows)]
    return BoundResult(bound, "shapewise", proof, per_shape, clock.elapsed(), iterations, trace,
                       info={"incumbent": best_cost, "shapes": int(lows.size), "discarded": discarded,
                             "refined": refined, "cpsat": cpsat_runs})
