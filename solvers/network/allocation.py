"""Budget allocation across layers, then each layer solved alone with a single-matrix method.

Per-layer budgets come from a rule: ``uniform`` (the global density in every layer), ``proportional``
(shares of the weighted layer totals ``w_l total_l``), or ``marginal`` (greedy on each layer's
cost-vs-budget curve, which the single-layer row-then-column greedy gives for all budgets at once). Each
layer is then solved as a single-matrix instance restricted to the columns of its live input channels
(dead channels propagated in layer order), with any method of :func:`rcprune.solve` (local annealing by
default). A heuristic: it ignores the coupling when allocating, and proves nothing.
"""
from __future__ import annotations

import heapq

import numpy as np
from tqdm.auto import tqdm

from rcprune.jit import jit
from rcprune.network.model import NetworkInstance, NetworkSolution, evaluate_network
from rcprune.matrix.model import Instance
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.solvers import check_options, solver
from rcprune.solvers.network.greedy import fill_columns, fill_rows, solution_state
from rcprune.solvers.network.shape_options import allocate_shapes, fixed_first
from rcprune.validation import InvalidInstanceError, check_int_option

ALLOCATIONS = ("uniform", "proportional", "marginal")




__all__ = ["network_allocation", "allocate", "layer_curve", "ALLOCATIONS"]


@jit(nogil=True)
def _curve(scores, row_order, r_min, budgets, out):
    """``out[g]`` = the best kept sum of the row-then-column greedy at budget ``budgets[g]``: over
    ``r >= r_min``, the first r rows of ``row_order`` and the top ``min(n, b // r)`` columns restricted
    to them. O(m n log n + m G)."""
    m, n = scores.shape
    col_sums = np.zeros(n)
    for g in range(budgets.shape[0]):
        out[g] = 0.0
    for r in range(1, m + 1):
        row = scores[row_order[r - 1]]
        for j in range(n):
            col_sums[j] += row[j]
        if r < r_min:
            continue
        prefix = np.empty(n + 1)
        prefix[0] = 0.0
        srt = np.sort(col_sums)
        for c in range(n):
            prefix[c + 1] = prefix[c] + srt[n - 1 - c]
        for g in range(budgets.shape[0]):
            c = min(n, budgets[g] // r)
            if prefix[c] > out[g]:
                out[g] = prefix[c]


def layer_curve(scores: np.ndarray, budgets: np.ndarray, fixed_rows=False) -> np.ndarray:
    """Kept sum of the single-layer row-then-column greedy at each budget: all rows if ``fixed_rows``
    is True; with a row mask, the fixed rows always and the others by decreasing row sum.

    >>> from rcprune.solvers.network.allocation import layer_curve  # the cached, canonical module
    >>> layer_curve(np.array([[4.0, 1.0], [0.0, 3.0]]), np.array([0, 1, 2, 4])).tolist()
    [0.0, 4.0, 5.0, 8.0]
    """
    s = np.ascontiguousarray(scores, dtype=np.float64)
    budgets = np.asarray(budgets, dtype=np.int64)
    fixed = np.broadcast_to(np.asarray(fixed_rows, bool), (s.shape[0],))
    if fixed.all():
        tops = np.concatenate(([0.0], np.cumsum(-np.sort(-s.sum(axis=0)))))
        return tops[np.minimum(s.shape[1], budgets // s.shape[0])]
    out = np.empty(budgets.shape[0])
    _curve(s, fixed_first(s.sum(axis=1), fixed).astype(np.int64), int(fixed.sum()), budgets, out)
    return out


def _hull(b: np.ndarray, v: np.ndarray) -> list[int]:
    """Indices of the upper concave envelope of the points (b, v), b increasing."""
    hull: list[int] = []
    for i in range(len(b)):
        while len(hull) >= 2:
            i1, i2 = hull[-2], hull[-1]
            if (v[i2] - v[i1]) * (b[i] - b[i1]) <= (v[i] - v[i1]) * (b[i2] - b[i1]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def allocate(instance: NetworkInstance, rule: str = "marginal", points: int = 64) -> np.ndarray:
    """Per-layer budgets (layer order) under the global budget (or the layer budgets).

    Every layer gets at least its minimum count and at most its size and layer budget. ``marginal``:
    each layer's kept-vs-budget curve (:func:`layer_curve` on a grid of ``points`` budgets) is replaced
    by its upper concave envelope; starting from the minima, the envelope segment with the largest
    weighted gain per entry is taken while the budget lasts (the last one partially).

    >>> from rcprune.solvers.network.allocation import allocate  # the cached, canonical module
    >>> from rcprune.network.generate import chain_network
    >>> allocate(chain_network(budget=20), "uniform").tolist()
    [6, 8, 6]
    """
    if rule not in ALLOCATIONS:
        raise InvalidInstanceError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {rule!r}")
    sizes = instance.sizes.astype(np.int64)
    lo = instance.min_counts.astype(np.int64)
    hi = np.minimum(sizes, instance.layer_budget_array())
    budget = instance.budget if instance.budget is not None else int(hi.sum())
    if rule in ("uniform", "proportional"):
        share = sizes.astype(np.float64) if rule == "uniform" else instance.weights * instance.totals
        return _water_fill(share, lo, hi, budget)
    w = instance.weights
    starts, heap, grids, gains = [], [], [], []
    for l, li in enumerate(instance.layers):
        grid = np.unique(np.concatenate(([lo[l], hi[l]], np.linspace(lo[l], hi[l], points).round()))).astype(np.int64)
        kept = layer_curve(instance.scores[li.name], grid, instance.fixed_rows(li.name))
        kept = np.maximum.accumulate(kept)
        hull = _hull(grid.astype(np.float64), kept)
        grids.append(grid[hull])
        gains.append(w[l] * kept[hull])
        starts.append(0)
        if len(hull) > 1:
            slope = (gains[l][1] - gains[l][0]) / (grids[l][1] - grids[l][0])
            heapq.heappush(heap, (-slope, l))
    alloc = lo.copy()
    left = budget - int(alloc.sum())
    while heap and left > 0:
        _, l = heapq.heappop(heap)
        t = starts[l]
        step = int(grids[l][t + 1] - grids[l][t])
        if step > left:
            alloc[l] += left
            left = 0
            break
        alloc[l] += step
        left -= step
        starts[l] = t + 1
        if t + 2 < len(grids[l]):
            slope = (gains[l][t + 2] - gains[l][t + 1]) / (grids[l][t + 2] - grids[l][t + 1])
            heapq.heappush(heap, (-slope, l))
    return alloc


def _water_fill(share: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: int) -> np.ndarray:
    """Integer budgets ``clip(lambda * share, lo, hi)`` with the largest lambda whose total fits
    ``budget`` (bisection), rounded down, the remainder to the largest fractional parts."""
    share = np.where(share > 0, share, 0.0).astype(np.float64)
    lo_f, hi_f = lo.astype(np.float64), hi.astype(np.float64)
    if hi.sum() <= budget:
        return hi.copy()
    if share.sum() <= 0:
        share = np.ones_like(share)
    a, b = 0.0, float(hi.max()) / max(float(share[share > 0].min()), 1e-300) + 1.0
    for _ in range(200):
        mid = (a + b) / 2
        if np.clip(mid * share, lo_f, hi_f).sum() <= budget:
            a = mid
        else:
            b = mid
    target = np.clip(a * share, lo_f, hi_f)
    alloc = np.floor(target + 1e-9).astype(np.int64)
    left = budget - int(alloc.sum())
    for l in np.argsort(-(target - alloc), kind="stable"):
        if left <= 0:
            break
        if alloc[l] < hi[l]:
            alloc[l] += 1
            left -= 1
    return alloc


def _fixed_first_layer(sub: np.ndarray, fixed: np.ndarray, fixed_cols: np.ndarray, budget: int,
                       shape) -> tuple[np.ndarray, np.ndarray]:
    """Row and column masks of the fixed-first row-then-column greedy on ``sub``: the fixed rows, then
    rows by decreasing sum, ``r`` in all; the fixed columns, then columns by decreasing sum over those
    rows, ``c`` in all. ``(r, c)`` is ``shape`` when given, else the ``r`` (at least the fixed rows, and
    leaving room for the fixed columns) whose ``c = budget // r`` keeps most. O(m n log n)."""
    m, n = sub.shape
    order = fixed_first(sub.sum(axis=1), fixed)
    r_min, c_min = max(int(fixed.sum()), 1), int(fixed_cols.sum())
    cum = np.cumsum(sub[order], axis=0)

    def top(r: int, c: int) -> tuple[float, np.ndarray]:
        picked = fixed_first(cum[r - 1], fixed_cols)[:max(c, c_min)]
        cols = np.zeros(n, bool)
        cols[picked] = True
        return float(cum[r - 1][picked].sum()), cols

    if shape is not None:
        r, c = max(int(shape[0]), r_min), max(min(int(shape[1]), n), c_min)
    else:
        best, r, c = -1.0, r_min, max(budget // r_min, c_min, 1)
        for rr in range(r_min, m + 1):
            cc = min(n, budget // rr)
            if cc < max(c_min, 1):
                break
            value = top(rr, cc)[0]
            if value > best:
                best, r, c = value, rr, cc
    rows = np.zeros(m, bool)
    rows[order[:r]] = True
    return rows, top(r, c)[1]


def _solve_layer(instance: NetworkInstance, l: int, live_cols: np.ndarray, budget: int, method: str, seed: int,
                 time_limit: float | None, options: dict, shape: tuple[int, int] | None = None):
    """Rows and columns (full length) of layer ``l`` under ``budget`` kept entries, or at most the
    kept ``shape`` (rows, columns: a measure's spend grows with both), columns among ``live_cols``."""
    li = instance.layers[l]
    s = instance.scores[li.name]
    rows = np.zeros(li.rows, bool)
    cols = np.zeros(li.cols, bool)
    idx = np.flatnonzero(live_cols)
    if budget < 1 or idx.size == 0:  # rows without columns cost nothing and keep channels alive
        rows[:] = True
        return rows, cols
    sub = s[:, idx]
    fixed, fixed_cols = instance.fixed_rows(li.name), instance.fixed_cols(li.name)[idx]
    if fixed.any() or fixed_cols.any():  # the single-matrix methods know neither: the fixed-first greedy
        rows[:], kept = _fixed_first_layer(sub, fixed, fixed_cols, budget, shape)
        cols[idx[kept]] = True
        return rows, cols
    if shape is None:
        sub_instance = Instance(sub, budget=min(budget, sub.size), name=f"{instance.name}/{li.name}")
    else:
        sub_instance = Instance(sub, shape=(shape[0], min(shape[1], idx.size)), name=f"{instance.name}/{li.name}")
    res = solver("matrix", method)(sub_instance, seed=seed, time_limit=time_limit, **options)
    rows[:] = res.solution.rows
    cols[idx[res.solution.cols]] = True
    return rows, cols


def network_allocation(instance: NetworkInstance, *, seed: int = 0, time_limit: float | None = None,
                       allocation: str = "marginal", layer_method: str = "annealing",
                       layer_options: dict | None = None, passes: int = 2, points: int = 64,
                       progress: bool = False) -> SolveResult:
    """Allocate per-layer budgets, then solve each layer alone with dead channels propagated.

    Parameters
    ----------
    instance : NetworkInstance
    seed : int
        Passed to the layer method.
    time_limit : float, optional
        Split evenly over the remaining layer solves (the allocation itself is not interrupted).
    allocation : "uniform", "proportional" or "marginal"
        See :func:`allocate`.
    layer_method : str
        A single-matrix method of :func:`rcprune.solve` (``"annealing"``: local annealing;
        ``"greedy-row-column"`` is fast).
    layer_options : dict
        Options of the layer method.
    passes : int
        Layers are solved in order; a channel whose producers are not solved yet counts as alive. Later
        passes use the previous pass's channels for those; the best pass (by evaluation) is returned.
    points : int
        Budgets per layer curve (marginal rule).
    progress : bool
        Show a tqdm progress bar over the layer solves.

    Returns
    -------
    SolveResult
        ``info``: ``allocation``, ``budgets`` (per layer kept entries), ``pass_costs``,
        ``fixed_first_layers`` (the layers solved by the fixed-first greedy instead of the layer method).

    Notes
    -----
    The marginal rule's curves cost O(sum_l m_l n_l log n_l + m_l points); its greedy is optimal for the
    concave envelopes of the curves (the classic separable concave allocation), not for the true curves.
    Each layer's budget is an upper bound on its kept count, so the global budget holds; a channel that
    dies after its consumers were solved wastes their columns (the evaluation counts what is kept).
    Under another measure than weights (:mod:`rcprune.network.measure`), the allocation is one kept
    shape per layer (:func:`rcprune.solvers.network.shape_options.allocate_shapes`) and each layer is
    solved at most at that shape, so the global spend holds by the measure's monotonicity. A layer with
    fixed rows or columns (protected, a channel floor) is solved by the fixed-first row-then-column
    greedy, not the layer method (the single-matrix methods know no fixed rows or columns); a layer
    left below its minimum by channels that died later gets its best live columns back.

    >>> from rcprune.solvers.network.allocation import network_allocation  # the cached, canonical module
    >>> from rcprune.network.generate import chain_network
    >>> res = network_allocation(chain_network(budget=20), layer_method="greedy-row-column")
    >>> res.feasible, res.kept_count <= 20
    (True, True)
    """
    clock = Stopwatch(time_limit)
    if not isinstance(instance, NetworkInstance):
        raise InvalidInstanceError(f"expected a rcprune.NetworkInstance, got {type(instance).__name__}")
    passes = check_int_option(passes, "passes", minimum=1)
    points = check_int_option(points, "points", minimum=2)
    if layer_options is not None and not isinstance(layer_options, dict):
        raise InvalidInstanceError(f"layer_options must be a dict of options of {layer_method!r}, got {layer_options!r}")
    options = dict(layer_options or {})
    check_options(solver("matrix", layer_method), layer_method, options)
    if allocation not in ALLOCATIONS:
        raise InvalidInstanceError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    counted = instance.measure.is_count
    if counted:
        budgets = allocate(instance, allocation, points)
    else:
        shape_rows, shape_cols = allocate_shapes(instance, allocation, points)
        budgets = shape_rows * shape_cols
    layers = instance.layers
    best, best_key, costs = None, None, []
    previous = None
    bar = tqdm(total=passes * len(layers), disable=not progress, desc="network-allocation", unit="layer")
    for _ in range(passes):
        masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        solved: set[str] = set()
        for l, li in enumerate(layers):
            live = []
            for g, _off in li.inputs:
                gi = instance.group(g)
                if gi.input:
                    live.append(np.ones(gi.size, bool))
                    continue
                a = np.zeros(gi.size, bool)
                pending = False
                for p in gi.producers:
                    if p in solved:
                        a |= masks[p][0]
                    else:
                        pending = True
                if pending:
                    a |= previous[g] if previous is not None else True
                live.append(a)
            live_cols = np.repeat(np.concatenate(live), li.block)
            remaining = len(layers) * passes - (len(costs) * len(layers) + l)
            share = None if time_limit is None else max(clock.remaining(), 0.01) / max(remaining, 1)
            shape = None if counted else (int(shape_rows[l]), int(shape_cols[l]))
            masks[li.name] = _solve_layer(instance, l, live_cols, int(budgets[l]), layer_method, seed, share, options,
                                          shape)
            solved.add(li.name)
            bar.update(1)
        sol = _fill(instance, NetworkSolution(masks))
        ev = evaluate_network(instance, sol)
        costs.append(ev.cost)
        key = (not ev.feasible, ev.cost)
        if best_key is None or key < best_key:
            best, best_key = sol, key
        previous = {g.name: _alive(instance, sol, g.name) for g in instance.groups}
        if time_limit is not None and clock.expired():
            break
    bar.close()
    pinned = [li.name for li in layers if instance.fixed_rows(li.name).any() or instance.fixed_cols(li.name).any()]
    info = {"allocation": allocation, "layer_method": layer_method, "budgets": budgets.tolist(),
            "pass_costs": costs, "fixed_first_layers": pinned}
    return make_result(instance, best, method="network-allocation", runtime=clock.elapsed(),
                               iterations=len(costs), seed=seed, info=info,
                               timed_out=time_limit is not None and clock.expired())


def _fill(instance: NetworkInstance, sol: NetworkSolution) -> NetworkSolution:
    """Spend what the layer solves left of the global budget (channels that died after their
    consumers were solved free some): first the best live columns of a layer left below its minimum
    count (its columns read channels that died later), then rows, then columns, as
    :func:`network_greedy` fills."""
    f, st = solution_state(instance, sol)
    short = np.flatnonzero((st.n_rows * st.n_cols < f.min_count) & (st.n_rows > 0))
    if short.size:
        rows, cols = st.rows.copy(), st.cols.copy()
        live = (st.alive > 0) | f.chan_input
        for l in short:
            seg = slice(f.col_off[l], f.col_off[l + 1])
            free = np.flatnonzero(~cols[seg] & live[f.col_chan[seg]])
            need = -(-(int(f.min_count[l]) - int(st.n_rows[l] * st.n_cols[l])) // int(st.n_rows[l]))
            cols[f.col_off[l] + free[np.argsort(-st.col_sums[seg][free], kind="stable")[:need]]] = True
        sol = NetworkSolution.from_flat(instance, rows, cols)
        f, st = solution_state(instance, sol)
    if st.spend[0] > f.budget[0]:
        return sol
    rows, cols, n_rows, col_sums = st.rows.copy(), st.cols.copy(), st.n_rows.copy(), st.col_sums.copy()
    live = (st.alive > 0) | f.chan_input
    fill_rows(f, rows, cols, n_rows, col_sums, live, st.spend[0])
    fill_columns(f, n_rows, col_sums, live, cols, True)
    return NetworkSolution.from_flat(instance, rows, cols)


def _alive(instance: NetworkInstance, sol: NetworkSolution, group: str) -> np.ndarray:
    gi = instance.group(group)
    if gi.input:
        return np.ones(gi.size, bool)
    a = np.zeros(gi.size, bool)
    for p in gi.producers:
        a |= sol[p].rows
    return a
