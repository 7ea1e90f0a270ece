"""Group-space ratio greedy: one kept channel count per channel group, allocated under the global budget.

The search space is :mod:`rcprune.network.group_space` (Torch-Pruning's: every producer and consumer of a
group keeps the same channels, whole). Each group keeps the top ``n_g`` channels of its importance ranking,
so a solution is the vector of sizes ``n``. Starting from every channel kept, the greedy repeatedly shrinks
the group whose next removal costs the least per unit of spend it saves (exact deltas from prefix-sum
lookups; a removal that saves nothing is looked past, down to the next one that does), first while a layer
exceeds its layer budget (saving: its excess entries), then while the spend exceeds the global budget. It
never removes a floor channel or breaks a layer's minimum count. An improvement pass then adds the
channels the leftover budget pays for (best cost decrease per spend first) and makes the best improving
one-channel swap between two groups (shrink one, grow another) that stays within budget, repeatedly.
"""
from __future__ import annotations

import numpy as np

from rcprune.network.group_space import GroupSpace
from rcprune.network.model import NetworkInstance
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import check_int_option

__all__ = ["network_group"]


def _local(space: GroupSpace, n: np.ndarray, layers) -> tuple[float, float]:
    """(cost, spend) of the given layers at state ``n``."""
    return (sum(space.layer_cost(l, n) for l in layers), sum(space.layer_spend(l, n) for l in layers))


def _excess(space: GroupSpace, n: np.ndarray, layers) -> int:
    return sum(max(space.count(l, n) - int(space.max_counts[l]), 0) for l in layers)


def _shrink_option(space: GroupSpace, n: np.ndarray, g: int, over_layers: bool):
    """``(cost increase per unit saved, new size)`` of group ``g``'s cheapest next shrink that saves
    spend (or layer-budget excess with ``over_layers``), or None."""
    layers = space.layers_of[g]
    cost, spend = _local(space, n, layers)
    before = _excess(space, n, layers) if over_layers else spend
    m = n.copy()
    for k in range(n[g] - 1, space.lower[g] - 1, -1):
        m[g] = k
        if any(space.count(l, m) < space.min_counts[l] for l in layers):
            return None
        new_cost, new_spend = _local(space, m, layers)
        saved = before - (_excess(space, m, layers) if over_layers else new_spend)
        if saved > 0:
            return (new_cost - cost) / saved, k
    return None


def _shrink(space: GroupSpace, n: np.ndarray) -> int:
    """Shrink ``n`` in place until it fits the budgets (or no shrink helps); returns the removals."""
    neighbours = [np.unique(np.concatenate([[space.out[l], *space.inputs[l]] for l in ls])) if len(ls) else []
                  for ls in space.layers_of]
    cache: dict[int, tuple | None] = {}
    spend = space.spend(n)
    removed = 0
    while True:
        over = [l for l in range(len(space.out)) if space.count(l, n) > space.max_counts[l]]
        if over:
            touched = {int(g) for l in over for g in (space.out[l], *space.inputs[l])}
            options = {g: _shrink_option(space, n, g, True) for g in sorted(touched)}
            cache.clear()
        elif spend > space.limit:
            for g in range(len(n)):
                if g not in cache:
                    cache[g] = _shrink_option(space, n, g, False)
            options = cache
        else:
            return removed
        live = [(opt[0], g, opt[1]) for g, opt in options.items() if opt is not None]
        if not live:
            return removed
        _, g, k = min(live)
        removed += int(n[g] - k)
        n[g] = k
        spend = space.spend(n)
        for h in neighbours[g]:
            cache.pop(int(h), None)


def _delta(space: GroupSpace, n: np.ndarray, m: np.ndarray, groups) -> tuple[float, float, bool]:
    """(cost change, spend change, layer counts within their minimum and budget) from ``n`` to ``m``,
    which differ in ``groups`` only."""
    layers = np.unique(np.concatenate([space.layers_of[g] for g in groups]))
    c0, s0 = _local(space, n, layers)
    c1, s1 = _local(space, m, layers)
    return c1 - c0, s1 - s0, space.counts_ok(m, layers)


def _step(n: np.ndarray, g: int, by: int) -> np.ndarray:
    m = n.copy()
    m[g] += by
    return m


def _grow(space: GroupSpace, n: np.ndarray, spend: float, tol: float) -> tuple[float, int]:
    """Add, one channel at a time, the channel with the largest cost decrease per spend that the budget
    still pays for; returns the new spend and the channels added."""
    added = 0
    while True:
        best = None
        for g in np.flatnonzero(n < space.sizes):
            dc, ds, ok = _delta(space, n, _step(n, g, 1), [g])
            if ok and -dc > tol and spend + ds <= space.limit:
                key = -dc / ds if ds > 0 else np.inf
                if best is None or key > best[0]:
                    best = (key, g, ds)
        if best is None:
            return spend, added
        n[best[1]] += 1
        spend += best[2]
        added += 1


def _best_swap(space: GroupSpace, n: np.ndarray, spend: float, tol: float, shared: np.ndarray):
    """The improving one-channel swap (shrink ``g``, grow ``h``) that fits, or None. Candidates are
    ranked by the sum of the two single-group deltas, which is exact unless ``g`` and ``h`` share a
    layer (``shared[g, h]``); every candidate is checked exactly before it is taken."""
    size = len(n)
    down = np.full((size, 2), np.inf)
    up = np.full((size, 2), np.inf)
    for g in range(size):
        if n[g] > space.lower[g]:
            dc, ds, _ = _delta(space, n, _step(n, g, -1), [g])
            down[g] = dc, ds
        if n[g] < space.sizes[g]:
            dc, ds, _ = _delta(space, n, _step(n, g, 1), [g])
            up[g] = dc, ds
    gain = -(down[:, 0][:, None] + up[:, 0][None, :])
    fits = spend + down[:, 1][:, None] + up[:, 1][None, :] <= space.limit
    finite = np.isfinite(gain)
    np.fill_diagonal(finite, False)
    candidates = np.argwhere(finite & ((fits & (gain > tol)) | shared))
    for g, h in sorted(candidates.tolist(), key=lambda gh: -gain[gh[0], gh[1]]):
        m = _step(_step(n, g, -1), h, 1)
        dc, ds, ok = _delta(space, n, m, [g, h])
        if ok and -dc > tol and spend + ds <= space.limit:
            return m, spend + ds
    return None


def network_group(instance: NetworkInstance, *, seed: int = 0, time_limit: float | None = None,
                  swaps: int = 500) -> SolveResult:
    """Group-space ratio greedy with a fill and swap improvement pass (see the module docstring).

    Parameters
    ----------
    instance : NetworkInstance
        Any network instance; on a channel-coarse one (:func:`rcprune.network.granularity.coarsen`) the
        columns are channels already.
    seed
        Accepted for the common interface; the method is deterministic.
    time_limit : float, optional
        Bounds the improvement pass; the greedy always runs to a solution within the budget.
    swaps : int
        At most this many improving swaps.

    Returns
    -------
    SolveResult
        Its solution lies in the group space. ``info``: ``group_sizes`` (kept channels per group),
        ``removed``, ``added``, ``swaps`` (moves of each phase), ``space_cost`` and ``space_spend`` (the
        state's cost and spend from the prefix sums, equal to the evaluation's).

    Notes
    -----
    Complexity: O(total entries) to build the prefix sums and spend grids; then, for R removed channels,
    O(R x groups x d) lookups for the greedy (a removal re-prices only the groups sharing a layer with
    it; d is the most layers a group touches, times the lookahead past removals that save nothing), and
    per grow or swap O(groups^2 + groups x d). No guarantee beyond feasibility: the result is within the
    budget whenever shrinking groups (never below their floor, never below a layer's minimum count)
    reaches it; otherwise the result is the infeasible state where no shrink helps, reported as such.
    On a network of one prunable group whose spend is linear in its size (the weights or MACs measure of
    one layer) the greedy keeps the top channels that fit, which is that space's optimum.

    >>> from rcprune.network.generate import residual_network
    >>> res = network_group(residual_network(budget=12))
    >>> res.feasible, res.info["group_sizes"]
    (True, {'x': 1, 'stem:out': 1, 'conv_a:out': 2, 'fc:out': 2})
    """
    clock = Stopwatch(time_limit)
    swaps = check_int_option(swaps, "swaps", minimum=0)
    space = GroupSpace(instance)
    n = space.full_sizes()
    removed = _shrink(space, n)
    tol = 1e-12 * (1.0 + float(np.sum(space.full_cost)))
    added = done = 0
    if space.feasible(n):
        shared = np.array([[bool(np.intersect1d(a, b).size) for b in space.layers_of] for a in space.layers_of])
        spend, added = _grow(space, n, space.spend(n), tol)
        while done < swaps and not clock.expired():
            swap = _best_swap(space, n, spend, tol, shared)
            if swap is None:
                break
            n, spend = swap
            done += 1
            spend, more = _grow(space, n, spend, tol)
            added += more
    info = {"group_sizes": {name: int(k) for name, k in zip(space.names, n)}, "removed": removed, "added": added,
            "swaps": done, "space_cost": space.cost(n), "space_spend": space.spend(n)}
    return make_result(instance, space.solution(n), method="network-group", runtime=clock.elapsed(),
                       iterations=removed + added + done, seed=seed, info=info)
