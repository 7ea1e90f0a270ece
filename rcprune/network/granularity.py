"""Granularity: which column sets a solution may keep. ``"column"`` is the full RC space (any column
of the im2col view); ``"channel"`` keeps or drops an input channel's whole column block (a pruned layer
stays a plain conv over fewer channels), each producer choosing its rows and each consumer its input
channels apart; ``"group"`` is Torch-Pruning's space (:mod:`rcprune.network.group_space`): one channel set
per channel group, the rows of every producer and the whole blocks read by every consumer, so residual
adds need no index gathers. Only ``network-group`` and ``network-uniform`` search the group space
(:func:`check_method`).

The channel and group spaces are solved exactly as an RC problem on a *coarse* instance: each layer's column block
(``block`` columns of one input channel) becomes one column whose score is the block's sum, and the
measure's spend of ``t`` coarse columns is the spend of ``t * block`` columns, so every coarse solution
refines (:func:`refine`) to a channel-granular solution of the original instance with the same cost,
the same spend and the same kept count. O(total entries).

>>> import numpy as np
>>> from rcprune.network.builder import NetworkBuilder
>>> b = NetworkBuilder("g")
>>> x = b.input("x", 2)
>>> h = b.layer("conv", np.arange(12.0).reshape(2, 6), x, kernel=(3, 1))
>>> net = b.build(budget=6)
>>> coarse = coarsen(net, "channel")
>>> coarse.scores["conv"].tolist()
[[3.0, 12.0], [21.0, 30.0]]
>>> from rcprune import NetworkSolution
>>> refine(net, NetworkSolution({"conv": ([1, 1], [0, 1])}), "channel")["conv"]
Solution(rows=[0, 1], cols=[3, 4, 5])
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from rcprune.network.group_space import GroupSpace
from rcprune.network.measure import Measure, SpendTable
from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.validation import InvalidInstanceError

__all__ = ["GRANULARITIES", "GROUP_METHODS", "coarsen", "refine", "check_granularity", "check_method", "least_spend"]

GRANULARITIES = ("column", "channel", "group")
GROUP_METHODS = ("network-group", "network-uniform")   # the other network methods choose each layer's rows and columns apart


def check_granularity(granularity) -> str:
    if granularity not in GRANULARITIES:
        raise InvalidInstanceError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
                                   + (" (kernel-offset granularity is not built yet)"
                                      if granularity == "kernel-offset" else ""))
    return granularity


def check_method(granularity: str, method: str | None) -> str:
    """The network method that searches ``granularity``'s space: ``method``, or by default
    ``network-group`` for ``"group"`` and ``network-greedy`` otherwise. The group space is searched by
    :data:`GROUP_METHODS` only; they search every granularity (their solutions lie in all three spaces)."""
    if check_granularity(granularity) != "group":
        return "network-greedy" if method is None else method
    if method is None:
        return GROUP_METHODS[0]
    if method not in GROUP_METHODS:
        raise InvalidInstanceError(f"granularity 'group' is searched by {', '.join(GROUP_METHODS)} only (the other "
                                   f"network methods choose each layer's rows and columns apart), got {method!r}")
    return method


def least_spend(instance: NetworkInstance, granularity: str) -> float:
    """The least spend of the prunable layers in ``granularity``'s space: the instance's minimum
    (``"column"``), its channel-coarse minimum (``"channel"``), or the spend of the group space's smallest
    state (``"group"``, :meth:`GroupSpace.least_sizes`)."""
    if check_granularity(granularity) == "column":
        return float(instance.min_spend.sum())
    coarse = coarsen(instance.replace(density=1.0), granularity)   # any budget: it plays no part
    if granularity == "channel":
        return float(coarse.min_spend.sum())
    space = GroupSpace(coarse)
    return space.spend(space.least_sizes())


def _coarse_measure(instance: NetworkInstance) -> Measure:
    """The measure in coarse columns: ``f'(r, t) = f(r, t * block)``."""
    m = instance.measure
    coef, tables = {}, {}
    for li in instance.layers:
        if li.name in m.coef:
            coef[li.name] = m.coef[li.name] * li.block
        t = m.tables.get(li.name)
        if t is None:
            continue
        if np.any(t.cols % li.block):
            # knots between channel boundaries: sample the table at every whole-channel count
            knots = np.arange(li.in_channels + 1)
            values = t(t.rows[:, None], knots[None, :] * li.block)
            tables[li.name] = SpendTable(t.rows, knots, SpendTable.monotone(values))
        else:
            tables[li.name] = SpendTable(t.rows, t.cols // li.block, t.values)
    return Measure(m.name, tables, coef=coef, unit=m.unit, fixed=m.fixed, metadata=m.metadata)


def coarsen(instance: NetworkInstance, granularity: str = "channel") -> NetworkInstance:
    """The instance whose columns are the units ``granularity`` keeps (the instance itself for
    ``"column"``; the channel-coarse instance for ``"channel"`` and ``"group"``). Per-layer budgets and minima stay in kept entries (rounded to whole blocks: down
    for a budget, up for a minimum, which the coarse instance enforces in its own entries)."""
    if check_granularity(granularity) == "column":
        return instance
    graph = nx.DiGraph(instance.graph)
    scores = {}
    for li in instance.layers:
        s = instance.scores[li.name]
        scores[li.name] = s.reshape(li.rows, li.in_channels, li.block).sum(axis=2)
        node = graph.nodes[li.name]
        node["block"] = 1
        node["kernel"] = None
        node["spatial"] = None
    layer_budgets = None
    if instance.layer_budgets is not None:
        layer_budgets = {n: v // instance.layer(n).block for n, v in instance.layer_budgets.items()}
    try:
        return NetworkInstance(graph, scores, budget=instance.budget, layer_budgets=layer_budgets,
                               min_density=instance.min_density, weighting=_weighting(instance),
                               measure=_coarse_measure(instance), name=f"{instance.name}/{granularity}",
                               metadata=dict(instance.metadata))
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"at {granularity} granularity (whole column blocks): {exc}") from None


def _weighting(instance: NetworkInstance):
    """Explicit per-layer weights: ``"total"`` / ``"mean"`` must not be recomputed on the coarse scores
    (block sums change the mean)."""
    return {n: float(w) for n, w in zip(instance.layer_names, instance.weights)}


def refine(instance: NetworkInstance, solution: NetworkSolution, granularity: str = "channel") -> NetworkSolution:
    """A coarse solution of ``coarsen(instance, granularity)`` as a solution of ``instance``: each kept
    coarse column keeps its whole block (a group-space solution stays one: same channels, whole blocks)."""
    if check_granularity(granularity) == "column":
        return solution
    return NetworkSolution({li.name: (solution[li.name].rows, np.repeat(solution[li.name].cols, li.block))
                            for li in instance.layers})
