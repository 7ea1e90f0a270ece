"""Budget allocation across layers from per-layer error-vs-budget curves (a multiple-choice knapsack).

Each layer ``l`` offers options ``(k, e)``: keep ``k`` entries at error ``e`` (e.g. the layer's output
error after the refit at that kept count, :func:`rcprune.torch.error_curves.error_curves`), spending ``k``
or, with ``spends=``, any non-negative amount (milliseconds from a latency table, MACs). Choose one option
per layer with total spend ``<= budget`` minimizing ``sum e``. Solved exactly by dynamic programming over
the budget left above every layer's cheapest option, in units of ``unit`` (each option's spend above its
layer's cheapest rounded *up* to whole units, so the choice always fits the real budget; with integer
spends and ``unit=1`` it is the exact optimum), and bounded from below by
the linear relaxation (each layer's lower convex hull, segments taken greedily by error decrease per unit
of spend, the last one fractionally), so ``error - lower_bound`` is a certified gap of the real problem
(``proofs/allocation.md``).

>>> curves = {"a": ([0, 2, 4], [9.0, 3.0, 0.0]), "b": ([0, 2, 4], [5.0, 1.0, 0.0])}
>>> res = allocate_by_curves(curves, budget=4)
>>> res.counts, res.error, res.lower_bound
({'a': 2, 'b': 2}, 4.0, 4.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rcprune.validation import InvalidInstanceError

__all__ = ["allocate_by_curves", "CurveAllocation"]

MAX_UNITS = 200_000   # DP cells per layer: a finer budget is coarsened to this many units


@dataclass(frozen=True)
class CurveAllocation:
    """``counts`` (kept entries per layer), ``error`` (their summed error), ``lower_bound`` (the linear
    relaxation's: no allocation within ``budget`` has less error), ``spend`` (the chosen options' total
    spend), ``unit`` (the DP's budget unit)."""
    counts: dict[str, int]
    error: float
    lower_bound: float
    spend: float
    unit: float

    @property
    def gap(self) -> float:
        return self.error - self.lower_bound


def _options(name: str, curve, spend) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spends, errors, counts)`` of a layer's options, by spend then error."""
    try:
        k, e = (np.asarray(a, dtype=np.float64) for a in curve)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"curve of layer {name!r} must be a pair (kept counts, errors)") from None
    if k.ndim != 1 or k.shape != e.shape or k.size == 0:
        raise InvalidInstanceError(f"curve of layer {name!r}: kept counts and errors must be 1-D arrays of the "
                                   f"same non-zero length, got shapes {k.shape} and {e.shape}")
    if not (np.isfinite(k).all() and np.isfinite(e).all()):
        raise InvalidInstanceError(f"curve of layer {name!r} has NaN or infinite values")
    if (k < 0).any() or (k != np.round(k)).any():
        raise InvalidInstanceError(f"curve of layer {name!r}: kept counts must be non-negative integers")
    if (e < 0).any():
        raise InvalidInstanceError(f"curve of layer {name!r} has a negative error")
    if spend is None:
        s = k.copy()
    else:
        s = np.asarray(spend, dtype=np.float64)
        if s.shape != k.shape or not np.isfinite(s).all() or (s < 0).any():
            raise InvalidInstanceError(f"spends of layer {name!r} must be {k.size} finite non-negative numbers, one "
                                       "per option")
    order = np.lexsort((e, s))
    return s[order], e[order], k[order].astype(np.int64)


def _undominated(s: np.ndarray, e: np.ndarray, k: np.ndarray):
    """The options (sorted by spend, then error) that no other beats in both spend and error: the DP is
    linear in the number of options, and the hull is taken over these."""
    keep, best = [], np.inf
    for i in range(len(s)):
        if e[i] < best:
            keep.append(i)
            best = e[i]
    return s[keep], e[keep], k[keep]


def _hull(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower convex hull of undominated options (spend rising, error falling)."""
    hull = []
    for i in range(len(s)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the segment a-i: not on the lower hull
            if (e[b] - e[a]) * (s[i] - s[a]) >= (e[i] - e[a]) * (s[b] - s[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return s[hull], e[hull]


def _lower_bound(options, budget: float) -> float:
    """The linear relaxation: every layer at its cheapest option, then hull segments by slope."""
    hulls = [_hull(s, e) for s, e, _ in options]
    error = sum(float(he[0]) for _, he in hulls)
    left = budget - sum(float(hs[0]) for hs, _ in hulls)
    segments = [((he[i] - he[i + 1]) / (hs[i + 1] - hs[i]), hs[i + 1] - hs[i], he[i] - he[i + 1])
                for hs, he in hulls for i in range(len(hs) - 1)]
    for slope, width, drop in sorted(segments, key=lambda seg: -seg[0]):   # convex: slopes fall within a layer
        if left <= 0:
            break
        take = 1.0 if left >= width else left / width   # (a subnormal width overflowed the division)
        error -= take * drop
        left -= take * width
    return error


def allocate_by_curves(curves: Mapping[str, tuple], budget: float, *, unit: float | None = None,
                       spends: Mapping[str, np.ndarray] | None = None) -> CurveAllocation:
    """One option per layer, total spend ``<= budget``, least ``sum e`` (see the module docstring).

    Parameters
    ----------
    curves : mapping layer -> (kept counts, errors)
        Any options per layer (unsorted, dominated ones allowed); at least one per layer.
    budget : int or float
        What all layers together may spend: kept entries (an integer), or the units of ``spends``.
    unit : int or float, optional
        The DP's budget unit. Default: 1 for kept entries (coarser, so that the budget above the cheapest
        options is at most 200,000 units), that budget / 200,000 with ``spends``.
    spends : mapping layer -> array, optional
        Each option's spend, aligned with the layer's counts (default: the counts).

    Returns
    -------
    CurveAllocation

    Notes
    -----
    O(L x P x budget / unit) time for L layers of P options, O(L x budget / unit) memory for the choices.
    Exact for integer spends and ``unit=1``; otherwise exact for spends (above each layer's cheapest option)
    rounded up to whole units: feasible for the real problem, its gap to ``lower_bound`` certified.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise InvalidInstanceError("curves must be a non-empty mapping layer -> (kept counts, errors)")
    if spends is not None and (not isinstance(spends, Mapping) or set(spends) != set(curves)):
        raise InvalidInstanceError("spends must map the same layers as curves to one spend per option")
    counted = spends is None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer) if counted else (int, float, np.number)) \
            or not math.isfinite(budget) or budget < 0:
        raise InvalidInstanceError(f"budget must be a non-negative {'integer' if counted else 'number'}, got {budget!r}")
    names = list(curves)
    options = [_undominated(*_options(n, curves[n], None if counted else spends[n])) for n in names]
    least = sum(float(s[0]) for s, _, _ in options)
    if least > budget:
        what = f"{least:g} entries" if counted else f"{least:g}"
        raise InvalidInstanceError(f"budget {budget:g} is below the least the curves allow, {what} (every layer "
                                   "at its smallest option)")
    extra = budget - least   # the DP spends what is above every layer's cheapest option
    if unit is None:
        unit = max(1, -(-int(extra) // MAX_UNITS)) if counted else \
            (extra / MAX_UNITS if extra > 1e-12 * max(1.0, budget) else 1.0)   # nothing above the cheapest: any unit
    elif isinstance(unit, bool) or not isinstance(unit, (int, float, np.number)) or not unit > 0 \
            or (counted and int(unit) != unit):
        raise InvalidInstanceError(f"unit must be a positive {'integer' if counted else 'number'}, got {unit!r}")
    cells = int(np.floor(extra / unit + 1e-9))
    units = [np.minimum(np.ceil((s - s[0]) / unit - 1e-9), cells + 1).astype(np.int64) for s, _, _ in options]
    dp = np.zeros(cells + 1)   # dp[b]: least error of the layers so far within b units
    choices = []
    for (_, e, _), u in zip(options, units):
        new = np.full(cells + 1, np.inf)
        pick = np.full(cells + 1, -1, dtype=np.int32)
        for o, (uo, err) in enumerate(zip(u, e)):
            if uo > cells:
                continue
            cand = np.full(cells + 1, np.inf)
            cand[uo:] = dp[:cells + 1 - uo] + err
            better = cand < new
            new[better], pick[better] = cand[better], o
        dp = new
        choices.append(pick)
    counts, error, spent, b = {}, 0.0, 0.0, cells
    for name, (s, e, k), u, pick in zip(reversed(names), reversed(options), reversed(units), reversed(choices)):
        o = int(pick[b])
        counts[name] = int(k[o])
        error += float(e[o])
        spent += float(s[o])
        b -= int(u[o])
    counts = {n: counts[n] for n in names}
    return CurveAllocation(counts, error, float(min(_lower_bound(options, budget), error)), spent, unit)
