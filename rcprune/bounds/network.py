"""A lower bound for whole-network RC pruning: per-layer bound curves combined over the global budget.

Relaxation. Every feasible network solution, after dead channels are removed, keeps in each layer l an
RC solution of its own matrix with some count k_l, and sum_l k_l <= K, k_l <= the layer budget. Dropping
the channel coupling (it only removes freedom: a dead channel prunes columns, adding cost) and the
minimum counts gives a relaxation, so

    OPT_net >= min { sum_l w_l OPT_l(k_l) : sum_l k_l <= K, 0 <= k_l <= u_l },

with OPT_l(k) the best single-layer cost under budget k (rows fixed, for a protected output, gives the
exact OPT_l(k) = total - the top floor(k / m) column sums, which is what is used then).
Curves. OPT_l is non-increasing in k. The top-k and spectral bounds are per shape and budget-free: one
table U_l[r, c] >= the kept sum of every r x c solution, for all shapes, serves every budget, since an
optimum grows to a maximal shape: OPT_l(k) >= total_l - max_r U_l[r, min(n, k // r)]. On a fine grid
0 = k_0 < k_1 < ... < k_T = size_l (steps of about 0.4% of the budget) these bounds L_l(k_t) <= OPT_l(k_t)
are made non-increasing by a running maximum from the right (OPT_l(k_t) >= OPT_l(k_t') >= L_l(k_t') for
t' > t), and for k in (k_{t-1}, k_t] OPT_l(k) >= L_l(k_t).
So a layer choosing the interval t uses at least k_{t-1} + 1 entries (k_0 = 0 uses none, bound total_l).
Measures. Under a spend budget ``sum_l f_l(r_l, c_l) <= B`` (:mod:`rcprune.network.measure`), a layer
keeping at least k entries spends at least ``g_l(k) = min { f_l(r, ceil(k / r)) }`` over its row counts
(the spend grows with the columns), so each interval is charged ``g_l(k_{t-1} + 1)`` against ``B``.
Allocation. The minimum over one interval per layer with sum of (k_{t-1} + 1) <= K is a multiple-choice
knapsack; for every lambda >= 0 its Lagrangian relaxation
    sum_l min_t [w_l L_l(t) + lambda (k_{t-1} + 1)] - lambda K
is a lower bound on it (weak duality), so on OPT_net; lambda is maximized by a golden-section search over
this concave function. Cost per layer: sorting for the top-k table, O(m n log(m n)), one Gram matrix for
the spectral norm, O(min(m, n)^2 max(m, n)), and O(m) per grid budget; then O(iterations * sum_l T).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from rcprune.validation import InvalidInstanceError

from rcprune.bounds.spectral import spectral_all_shapes
from rcprune.bounds.topk import topk_all_shapes

__all__ = ["NetworkBound", "layer_bound_curve", "network_lower_bound", "certify_network"]


@dataclass(frozen=True)
class NetworkBound:
    """A proven lower bound on the optimal weighted network cost.

    Attributes
    ----------
    bound : float
    per_layer : list of dict
        ``layer``, ``weight``, ``allocated`` (the budget interval chosen by the best multiplier),
        ``lower_bound`` (weighted bound of the layer at that allocation).
    multiplier : float
        The budget multiplier lambda that gives ``bound``.
    proof : str
    runtime : float
    curves : dict layer -> (budgets, bounds)
    """

    bound: float
    per_layer: list
    multiplier: float
    proof: str
    runtime: float
    curves: dict = field(default_factory=dict, repr=False)


def shape_upper_table(scores: np.ndarray) -> np.ndarray:
    """``U[r, c]`` >= the kept sum of every solution with exactly r rows and c columns, for all shapes:
    the entry-wise best of the top-k and spectral tables (both budget-free)."""
    s = np.asarray(scores, dtype=np.float64)
    return np.minimum(topk_all_shapes(s), spectral_all_shapes(s))


def curve_from_table(upper: np.ndarray, total: float, budgets: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Lower bounds on OPT(k) for each budget k, from a per-shape kept-sum table ``upper`` (m+1 x n+1):
    an optimum grows to a maximal shape (r, min(n, k // r)), so OPT(k) >= total - max_r upper[r, min(n, k // r)]."""
    m, n = upper.shape[0] - 1, upper.shape[1] - 1
    rows = np.arange(1, m + 1)
    out = np.empty(budgets.shape[0])
    step = max(1, 4_000_000 // max(m, 1))
    for lo in range(0, budgets.shape[0], step):
        k = budgets[lo:lo + step, None]
        cols = np.minimum(n, k // rows[None, :])
        out[lo:lo + step] = upper[rows[None, :], cols].max(axis=1)
    return np.maximum(total - out - margin, 0.0)


def budget_grid(size: int, points: int) -> np.ndarray:
    """0, size, ``points`` budgets geometric in the density and ``points // 4`` linear ones (sorted, unique)."""
    dens = np.concatenate((np.geomspace(1.0 / size, 1.0, points), np.linspace(0.0, 1.0, points // 4 + 1)))
    return np.unique(np.concatenate(([0, size], np.clip(np.ceil(dens * size), 0, size).astype(np.int64))))


def layer_bound_curve(scores: np.ndarray, points: int = 4096, fixed_rows: bool = False):
    """``(budgets, bounds)``: non-increasing lower bounds on OPT(k) at budgets 0 = k_0 < ... < size.

    The grid is geometric in the density (``points`` budgets) plus ``points // 4`` linear ones. One
    budget-free per-shape table (:func:`shape_upper_table`) gives every grid point in O(m) each.

    >>> budgets, bounds = layer_bound_curve(np.array([[4.0, 1.0], [0.0, 3.0]]), points=4)
    >>> budgets.tolist(), bounds.round(6).tolist()
    ([0, 1, 2, 3, 4], [8.0, 4.0, 3.0, 3.0, 0.0])
    """
    s = np.asarray(scores, dtype=np.float64)
    m, n = s.shape
    size = m * n
    grid = budget_grid(size, points)
    total = float(s.sum())
    margin = 8.0 * np.finfo(np.float64).eps * (m + n) * total
    if fixed_rows:
        tops = np.concatenate(([0.0], np.cumsum(-np.sort(-s.sum(axis=0)))))
        bounds = total - tops[np.minimum(n, grid // m)] - margin
    else:
        bounds = curve_from_table(shape_upper_table(s), total, grid, margin)
    bounds[0] = total
    bounds = np.maximum(np.maximum.accumulate(bounds[::-1])[::-1], 0.0)
    return grid, bounds


def network_lower_bound(instance, *, points: int = 4096, iterations: int = 100) -> NetworkBound:
    """A lower bound on the optimal cost of a :class:`rcprune.NetworkInstance` (see the module docstring).

    >>> from rcprune.network.generate import chain_network
    >>> net = chain_network(0, budget=20)
    >>> network_lower_bound(net).bound >= 0
    True
    """
    from rcprune.network.model import NetworkInstance

    if not isinstance(instance, NetworkInstance):
        raise InvalidInstanceError(f"expected a rcprune.NetworkInstance, got {type(instance).__name__}")
    start = time.perf_counter()
    names = instance.layer_names
    weights = np.asarray(instance.weights, dtype=np.float64)
    caps = instance.layer_budget_array()
    budget = instance.effective_budget
    curves, options = {}, []
    for l, name in enumerate(names):
        fixed = instance.fixed_rows(name)
        # a partial floor of fixed rows, and fixed columns, are relaxed away (a valid bound); all rows fixed is exact
        grid, low = layer_bound_curve(instance.scores[name], points, bool(fixed.all()))
        curves[name] = (grid, low)
        used = np.concatenate(([0], grid[:-1] + 1))  # least count in each interval (k_{t-1}, k_t]
        ok = used <= caps[l]
        if instance.measure.is_count:
            spend = used[ok].astype(np.float64)
        else:  # the least spend of any shape keeping that many entries
            li = instance.layer(name)
            spend = instance.measure.least_spend(name, li.rows, li.cols, used[ok], min_rows=int(fixed.sum()),
                                                 min_cols=int(instance.fixed_cols(name).sum()))
        options.append((spend, weights[l] * low[ok]))

    def dual(lam: float):
        value, picks = -lam * budget, []
        for used, low in options:
            t = int(np.argmin(low + lam * used))
            picks.append(t)
            value += low[t] + lam * used[t]
        return value, picks

    step = min((float(u[u > 0].min()) for u, _ in options if np.any(u > 0)), default=1.0)
    hi = (max((float(low.max()) for _, low in options), default=0.0) + 1.0) / min(step, 1.0)
    a, b = 0.0, hi
    best_val, best_lam = dual(0.0)[0], 0.0
    g = (math.sqrt(5) - 1) / 2
    for _ in range(iterations):
        x1, x2 = b - g * (b - a), a + g * (b - a)
        v1, v2 = dual(x1)[0], dual(x2)[0]
        for v, x in ((v1, x1), (v2, x2)):
            if v > best_val:
                best_val, best_lam = v, x
        if v1 < v2:
            a = x1
        else:
            b = x2
    _, picks = dual(best_lam)
    bound = float(max(best_val, 0.0))
    per_layer = []
    for l, name in enumerate(names):
        used, low = options[l]
        spent = used[picks[l]]
        per_layer.append({"layer": name, "weight": float(weights[l]),
                          "allocated": int(spent) if instance.measure.is_count else float(spent),
                          "lower_bound": float(low[picks[l]])})
    proof = (f"network bound: dropping the channel coupling and the minimum counts leaves independent layers "
             f"under the global budget {budget}; per-layer non-increasing bound curves (about {points} budgets "
             f"each, from budget-free top-k and spectral shape tables) combined by the Lagrangian dual of the budget constraint at "
             f"lambda = {best_lam:.6g} give OPT >= {bound:.10g}")
    return NetworkBound(bound, per_layer, best_lam, proof, time.perf_counter() - start, curves)


def certify_network(result, instance, **options):
    """``result`` (a network solve) with the best of its own lower bound and :func:`network_lower_bound`'s,
    so ``result.gap`` is a certified gap; ``"optimal"`` when the bound meets the cost (1e-9 relative).

    >>> import rcprune
    >>> from rcprune.network.generate import chain_network
    >>> net = chain_network(0, budget=20)
    >>> res = certify_network(rcprune.solve(net, method="network-greedy"), net)
    >>> 0.0 <= res.lower_bound <= res.cost and res.info["bound"]["method"] == "network"
    True
    """
    import dataclasses

    from rcprune.result import SolveResult

    if not isinstance(result, SolveResult):
        raise InvalidInstanceError(f"expected a rcprune.SolveResult, got {type(result).__name__}")
    b = network_lower_bound(instance, **options)
    best = b.bound if result.lower_bound is None else max(result.lower_bound, b.bound)
    if result.feasible:
        if best > result.cost + 1e-9 * max(1.0, abs(result.cost)):
            raise RuntimeError(f"lower bound {best} exceeds the cost {result.cost} of a feasible solution")
        best = min(best, result.cost)
    proven = result.feasible and result.cost - best <= 1e-9 * max(1.0, abs(result.cost))
    info = dict(result.info)
    info["bound"] = {"method": "network", "bound": b.bound, "proof": b.proof, "runtime": b.runtime,
                     "per_layer": b.per_layer}
    return dataclasses.replace(result, lower_bound=float(best), status="optimal" if proven else result.status,
                               info=info)
