"""Budget allocation across layers from per-layer error-vs-budget curves (a multiple-choice knapsack).

Each layer ``l`` offers options ``(k, e)``: keep ``k`` entries at error ``e`` (e.g. the layer's output
error after the refit at that kept count, :func:`rcprune.torch.error_curves.error_curves`). Choose one
option per layer with ``sum k <= budget`` minimizing ``sum e``. Solved exactly by dynamic programming over
the budget in units of ``unit`` entries (each option's count rounded *up* to whole units, so the choice
always fits the real budget; with ``unit=1`` it is the exact optimum), and bounded from below by the
linear relaxation (each layer's lower convex hull, segments taken greedily by error decrease per entry,
the last one fractionally), so ``error - lower_bound`` is a certified gap of the real problem.

>>> curves = {"a": ([0, 2, 4], [9.0, 3.0, 0.0]), "b": ([0, 2, 4], [5.0, 1.0, 0.0])}
>>> res = allocate_by_curves(curves, budget=4)
>>> res.counts, res.error, res.lower_bound
({'a': 2, 'b': 2}, 4.0, 4.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rcprune.validation import InvalidInstanceError

__all__ = ["allocate_by_curves", "CurveAllocation"]

MAX_UNITS = 200_000   # DP cells per layer: a finer budget is coarsened to this many units


@dataclass(frozen=True)
class CurveAllocation:
    """``counts`` (kept entries per layer), ``error`` (their summed error), ``lower_bound`` (the linear
    relaxation's: no allocation within ``budget`` has less error), ``unit`` (the DP's budget unit)."""
    counts: dict[str, int]
    error: float
    lower_bound: float
    unit: int

    @property
    def gap(self) -> float:
        return self.error - self.lower_bound


def _options(name: str, curve) -> tuple[np.ndarray, np.ndarray]:
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
    order = np.lexsort((e, k))
    return k[order].astype(np.int64), e[order]


def _hull(k: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower convex hull of the options that are not dominated (more entries, no less error)."""
    keep = [0]
    for i in range(1, len(k)):
        if e[i] < e[keep[-1]]:
            if k[i] == k[keep[-1]]:
                keep[-1] = i
            else:
                keep.append(i)
    k, e = k[keep], e[keep]
    hull = []
    for i in range(len(k)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the segment a-i: not on the lower hull
            if (e[b] - e[a]) * (k[i] - k[a]) >= (e[i] - e[a]) * (k[b] - k[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return k[hull], e[hull]


def _lower_bound(options: list[tuple[np.ndarray, np.ndarray]], budget: int) -> float:
    """The linear relaxation: every layer at its cheapest option, then hull segments by slope."""
    base_k = sum(int(k[0]) for k, _ in options)
    error = sum(float(_hull(k, e)[1][0]) for k, e in options)
    segments = []
    for k, e in options:
        hk, he = _hull(k, e)
        segments += [((he[i] - he[i + 1]) / (hk[i + 1] - hk[i]), hk[i + 1] - hk[i], he[i] - he[i + 1])
                     for i in range(len(hk) - 1)]
    left = budget - base_k
    for slope, width, drop in sorted(segments, key=lambda s: -s[0]):   # convex: slopes fall within a layer
        take = min(1.0, left / width)
        error -= take * drop
        left -= take * width
        if left <= 0:
            break
    return error


def allocate_by_curves(curves: Mapping[str, tuple], budget: int, *, unit: int | None = None) -> CurveAllocation:
    """One option per layer, ``sum k <= budget``, least ``sum e`` (see the module docstring).

    Parameters
    ----------
    curves : mapping layer -> (kept counts, errors)
        Any options per layer (unsorted, dominated ones allowed); at least one per layer.
    budget : int
        Entries to keep in all layers together.
    unit : int, optional
        The DP's budget unit (default: 1, or coarser so that the budget is at most 200,000 units).

    Returns
    -------
    CurveAllocation

    Notes
    -----
    O(L x P x budget / unit) time for L layers of P options, O(L x budget / unit) memory for the choices.
    Exact for ``unit=1``; otherwise exact for counts rounded up to whole units (feasible for the real
    problem; its gap to ``lower_bound`` is certified).
    """
    if not isinstance(curves, Mapping) or not curves:
        raise InvalidInstanceError("curves must be a non-empty mapping layer -> (kept counts, errors)")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise InvalidInstanceError(f"budget must be a non-negative integer, got {budget!r}")
    budget = int(budget)
    names = list(curves)
    options = [_options(n, curves[n]) for n in names]
    least = sum(int(k[0]) for k, _ in options)
    if least > budget:
        raise InvalidInstanceError(f"budget {budget} is below the least the curves allow, {least} entries "
                                   "(every layer at its smallest option)")
    if unit is None:
        unit = max(1, -(-budget // MAX_UNITS))
    elif isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or unit < 1:
        raise InvalidInstanceError(f"unit must be a positive integer, got {unit!r}")
    cells = budget // unit
    if sum(int(-(-k[0] // unit)) for k, _ in options) > cells:
        raise InvalidInstanceError(f"unit {unit} is too coarse for budget {budget}: the smallest options no longer "
                                   "fit once rounded up; give a smaller unit")
    dp = np.zeros(cells + 1)   # dp[b]: least error of the layers so far within b units
    choices = []
    for k, e in options:
        units = -(-k // unit)
        new = np.full(cells + 1, np.inf)
        pick = np.full(cells + 1, -1, dtype=np.int32)
        for o, (u, err) in enumerate(zip(units, e)):
            if u > cells:
                continue
            cand = np.full(cells + 1, np.inf)
            cand[u:] = dp[:cells + 1 - u] + err
            better = cand < new
            new[better], pick[better] = cand[better], o
        dp = new
        choices.append(pick)
    counts, error, b = {}, 0.0, cells
    for name, (k, e), pick in zip(reversed(names), reversed(options), reversed(choices)):
        o = int(pick[b])
        counts[name] = int(k[o])
        error += float(e[o])
        b -= int(-(-k[o] // unit))
    counts = {n: counts[n] for n in names}
    return CurveAllocation(counts, error, float(min(_lower_bound(options, budget), error)), unit)
