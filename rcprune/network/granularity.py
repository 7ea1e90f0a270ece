"""Granularity: which column sets a solution may keep. ``"column"`` is the full RC space (any column
of the im2col view); ``"channel"`` keeps or drops an input channel's whole column block, which is
Torch-Pruning's space (a pruned layer stays a plain conv over fewer channels).

The channel space is solved exactly as an RC problem on a *coarse* instance: each layer's column block
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

from rcprune.network.measure import Measure, SpendTable
from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.validation import InvalidInstanceError

__all__ = ["GRANULARITIES", "coarsen", "refine", "check_granularity"]

GRANULARITIES = ("column", "channel")


def check_granularity(granularity) -> str:
    if granularity not in GRANULARITIES:
        raise InvalidInstanceError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}"
                                   + (" (kernel-offset granularity is not built yet)"
                                      if granularity == "kernel-offset" else ""))
    return granularity


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
    ``"column"``). Per-layer budgets and minima stay in kept entries (rounded to whole blocks: down
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
    coarse column keeps its whole block."""
    if check_granularity(granularity) == "column":
        return solution
    return NetworkSolution({li.name: (solution[li.name].rows, np.repeat(solution[li.name].cols, li.block))
                            for li in instance.layers})
