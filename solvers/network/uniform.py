"""Uniform allocation in the group space: one kept share for every channel group (Torch-Pruning's per-layer
allocation), the largest share the budget pays for, under any measure (kept weights, MACs, latency).

The search space is :mod:`rcprune.network.group_space`; a group keeps its top ``round(s * size)`` channels
(never fewer than its floor; inputs and protected groups keep all), so the state is a function of one
share ``s``, and spend only grows with ``s``. The method bisects over the shares where some group's count
changes for the largest whose state fits every budget. With ``fill=True`` the budget left by rounding
then buys single channels, the largest cost decrease per spend first. It is the allocation rcprune's
optimized ones are measured against: the same channel rankings, the same compaction, only the split of
the budget differs.
"""
from __future__ import annotations

import numpy as np

from rcprune.network.group_space import GroupSpace
from rcprune.network.model import NetworkInstance
from rcprune.result import Stopwatch, SolveResult, make_result
from rcprune.validation import check_flag

from rcprune.solvers.network.group import _grow

__all__ = ["network_uniform"]


def _sizes(space: GroupSpace, share: float) -> np.ndarray:
    n = np.floor(share * space.sizes + 0.5 + 1e-9).astype(np.int64)   # a share point counts at itself
    return np.clip(n, space.lower, space.sizes)


def _fits(space: GroupSpace, n: np.ndarray) -> bool:
    return space.spend(n) <= space.limit and all(space.count(l, n) <= space.max_counts[l] for l in range(len(space.out)))


def network_uniform(instance: NetworkInstance, *, seed: int = 0, time_limit: float | None = None,
                    fill: bool = False) -> SolveResult:
    """The largest uniform share of every channel group that fits the budget (see the module docstring).

    Parameters
    ----------
    instance : NetworkInstance
    seed
        Accepted for the common interface; the method is deterministic.
    time_limit : float, optional
        Accepted for the common interface; the bisection always runs to its end (O(log of the number of
        channels) states).
    fill : bool
        Spend what rounding leaves on single channels (then the allocation is no longer exactly uniform).

    Returns
    -------
    SolveResult
        In the group space; ``info``: ``share`` (the uniform share), ``group_sizes``, ``added`` (by
        ``fill``), ``space_cost``, ``space_spend``. Infeasible when even the smallest uniform state breaks
        a budget or a layer's minimum count.

    Notes
    -----
    Complexity: O(total entries) to build the group space, then O(log C x L x d) for C channels, L layers
    and d input groups per layer. No approximation guarantee on the cost: the allocation ignores the
    scores (the rankings within groups use them); among uniform allocations it keeps the largest share
    that fits, exactly, because spend and counts grow with the share.

    >>> from rcprune.network.generate import residual_network
    >>> res = network_uniform(residual_network(budget=12))
    >>> res.feasible, res.info["share"] > 0, sorted(res.info["group_sizes"].values())
    (True, True, [1, 1, 1, 2])
    """
    clock = Stopwatch(time_limit)
    fill = check_flag(fill, "fill")
    space = GroupSpace(instance)
    free = space.lower < space.sizes
    breaks = np.unique(np.concatenate([[0.0]] + [(np.arange(s) + 0.5) / s for s in space.sizes[free]]))
    lo, hi = 0, len(breaks) - 1   # the state at breaks[i] keeps every channel whose share point is <= it
    if _fits(space, _sizes(space, breaks[hi])):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _fits(space, _sizes(space, breaks[mid])):
                lo = mid
            else:
                hi = mid
    share = float(breaks[lo])
    n = _sizes(space, share)
    added = 0
    if fill and space.feasible(n):
        tol = 1e-12 * (1.0 + float(np.sum(space.full_cost)))
        _, added = _grow(space, n, space.spend(n), tol)
    info = {"share": share, "group_sizes": {name: int(k) for name, k in zip(space.names, n)}, "added": added,
            "space_cost": space.cost(n), "space_spend": space.spend(n)}
    return make_result(instance, space.solution(n), method="network-uniform", runtime=clock.elapsed(),
                       iterations=int(np.log2(max(len(breaks), 2))) + added, seed=seed, info=info)
