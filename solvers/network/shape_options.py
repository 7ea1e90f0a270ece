"""Per-layer kept shapes under a measure's budget: a multiple-choice knapsack over shape options.

Each layer offers shapes ``(r, c)`` on a grid (at least its fixed rows); a shape is worth the
row-then-column greedy's kept sum at that shape (the fixed rows, then the top rows by row sum, ``r`` in
all, then the top ``c``
column sums over them), weighted by ``w_l``, and costs the measure's spend ``f_l(r, c)``. One shape per
layer under ``sum_l f_l(r_l, c_l) <= budget`` is a multiple-choice knapsack; it is solved as HALP does
(Shen et al. 2022) up to the envelope: each layer's options are reduced to the upper concave envelope of
(spend, worth), every layer starts at its cheapest shape and the envelope step with the largest worth
per spend is taken while it fits; the budget left over then buys the single best upgrade that fits,
repeatedly. A heuristic: the shapes' worths ignore the channel coupling, and the greedy is exact only
for the envelopes. Cost: O(R (m n + n log n)) per layer for ``R`` row counts, then O(options log L).

>>> from rcprune.solvers.network.shape_options import allocate_shapes  # the cached, canonical module
>>> from rcprune.network.generate import chain_network
>>> net = chain_network(budget=20)
>>> net = net.replace(measure="macs", budget=None, density=0.5)
>>> rows, cols = allocate_shapes(net)
>>> sum(net.measure.spend(n, r, c) for n, r, c in zip(net.layer_names, rows, cols)) <= net.budget
True
"""
from __future__ import annotations

import heapq

import numpy as np

from rcprune.network.model import NetworkInstance

__all__ = ["layer_options", "allocate_shapes", "fixed_first"]


def fixed_first(values: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Order of the row-then-column greedy's rows (``values`` = row sums) or columns (sums over the kept
    rows): the fixed ones first, then by decreasing value (ties to the lower index), so every prefix of
    at least ``fixed.sum()`` holds the fixed ones."""
    return np.lexsort((-np.asarray(values), ~np.asarray(fixed, bool)))


def _grid(hi: int, points: int, lo: int = 0) -> np.ndarray:
    """Integers lo..hi: an even grid of ``points`` plus the powers of two (small shapes matter)."""
    geo = 2 ** np.arange(int(np.log2(max(hi, 1))) + 1)
    return np.unique(np.concatenate(([lo, hi], np.linspace(lo, hi, points).round(), geo[geo >= lo]))).astype(np.int64)


def layer_options(instance: NetworkInstance, l: int, points: int = 32) -> np.ndarray:
    """The shape options of layer ``l``: rows ``(r, c, worth, spend)`` meeting its minimum count and
    layer budget, sorted by spend. A layer that may be empty offers ``(all rows, 0 columns)``, which
    spends nothing and keeps its channels alive for its consumers."""
    li = instance.layers[l]
    s = instance.scores[li.name]
    w = float(instance.weights[l])
    lo, hi = int(instance.min_counts[l]), int(instance.layer_budget_array()[l])
    fixed, fixed_cols = instance.fixed_rows(li.name), instance.fixed_cols(li.name)
    c_min = int(fixed_cols.sum())
    row_counts = _grid(li.rows, max(points // 2, 2), lo=max(int(fixed.sum()), 1))
    order = fixed_first(s.sum(axis=1), fixed)
    cum = np.cumsum(s[order], axis=0)
    col_grid = _grid(li.cols, points)
    out = []
    for r in row_counts:  # the fixed columns first, then the best others
        prefix = np.concatenate(([0.0], np.cumsum(cum[r - 1][fixed_first(cum[r - 1], fixed_cols)])))
        cs = np.unique(np.concatenate((col_grid, [min(li.cols, -(-lo // r)), c_min]))) if lo > 0 else col_grid
        cs = cs[(cs >= max(c_min, 1)) & (r * cs >= lo) & (r * cs <= hi)]
        out += zip([r] * cs.size, cs, w * prefix[cs], np.atleast_1d(instance.measure.spend(li.name, r, cs)))
    if lo == 0:
        out.append((li.rows, 0, 0.0, 0.0))
    opts = np.array(out, dtype=np.float64).reshape(-1, 4)
    return opts[np.lexsort((-opts[:, 2], opts[:, 3]))]


def _envelope(opts: np.ndarray) -> np.ndarray:
    """Indices (into spend-sorted ``opts``) of the upper concave envelope of (spend, worth)."""
    front = []
    best = -np.inf
    for i in range(opts.shape[0]):  # Pareto front first: more spend must buy more worth
        if opts[i, 2] > best:
            if front and opts[front[-1], 3] == opts[i, 3]:
                front.pop()
            front.append(i)
            best = opts[i, 2]
    hull: list[int] = []
    for i in front:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (opts[b, 2] - opts[a, 2]) * (opts[i, 3] - opts[a, 3]) <= (opts[i, 2] - opts[a, 2]) * (opts[b, 3] - opts[a, 3]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.array(hull, dtype=np.int64)


def _best_within(options: list[np.ndarray], caps: np.ndarray) -> list[int]:
    """Per layer, the worthiest option spending at most its cap (the cheapest when none does)."""
    out = []
    for o, cap in zip(options, caps):
        fits = np.flatnonzero(o[:, 3] <= cap)
        out.append(int(fits[np.argmax(o[fits, 2])]) if fits.size else 0)
    return out


def _shares(instance: NetworkInstance, options: list[np.ndarray], share: np.ndarray) -> list[int]:
    """Spend caps ``lambda * share`` with the largest lambda (bisection) whose best options fit."""
    budget = instance.effective_budget
    total = lambda lam: sum(float(o[i, 3]) for o, i in zip(options, _best_within(options, lam * share)))  # noqa: E731
    a, b = 0.0, 1.0
    while total(b) <= budget and b < 1e12:
        a, b = b, 2 * b
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if total(mid) <= budget else (a, mid)
    return _best_within(options, a * share)


def allocate_shapes(instance: NetworkInstance, rule: str = "marginal", points: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One kept shape per layer (``rows``, ``cols`` arrays in layer order) whose total spend fits the
    global budget. ``marginal``: the knapsack greedy of the module docstring; ``uniform``: every layer
    the same share of its full spend; ``proportional``: spend shares ``w_l total_l``; the latter two
    take each layer's worthiest option within its share (largest shares that fit, by bisection).
    The cheapest option of a layer may spend more than its exact minimum (the options are a grid)."""
    options = [layer_options(instance, l, points) for l in range(instance.n_layers)]
    if rule != "marginal":
        share = np.asarray(instance.full_spend if rule == "uniform" else instance.weights * instance.totals, float)
        chosen = _shares(instance, options, np.maximum(share, 1e-300))
        return (np.array([int(o[i, 0]) for o, i in zip(options, chosen)], np.int64),
                np.array([int(o[i, 1]) for o, i in zip(options, chosen)], np.int64))
    budget = instance.effective_budget
    hulls = [_envelope(o) for o in options]
    pick = np.zeros(len(options), np.int64)  # position on the envelope
    spend = sum(float(o[h[0], 3]) for o, h in zip(options, hulls))
    heap = []

    def push(l):
        t = pick[l]
        h, o = hulls[l], options[l]
        if t + 1 < h.size:
            gain = o[h[t + 1], 2] - o[h[t], 2]
            cost = o[h[t + 1], 3] - o[h[t], 3]
            heapq.heappush(heap, (-gain / cost if cost > 0 else -np.inf, l))

    for l in range(len(options)):
        push(l)
    while heap:
        _, l = heapq.heappop(heap)
        o, h, t = options[l], hulls[l], pick[l]
        more = o[h[t + 1], 3] - o[h[t], 3]
        if spend + more <= budget:
            spend += more
            pick[l] = t + 1
            push(l)
    chosen = [int(h[t]) for h, t in zip(hulls, pick)]
    while True:  # the left-over budget buys the best single upgrade that fits, off the envelope too
        best = (0.0, -1, -1)
        for l, o in enumerate(options):
            cur = o[chosen[l]]
            fits = (o[:, 3] - cur[3] <= budget - spend) & (o[:, 2] > cur[2])
            if fits.any():
                i = int(np.flatnonzero(fits)[np.argmax(o[fits, 2])])
                if o[i, 2] - cur[2] > best[0]:
                    best = (o[i, 2] - cur[2], l, i)
        if best[1] < 0:
            break
        _, l, i = best
        spend += options[l][i, 3] - options[l][chosen[l], 3]
        chosen[l] = i
    rows = np.array([int(o[i, 0]) for o, i in zip(options, chosen)], np.int64)
    cols = np.array([int(o[i, 1]) for o, i in zip(options, chosen)], np.int64)
    return rows, cols
