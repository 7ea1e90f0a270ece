"""Unread rows: a kept row whose channel no consumer reads (every consumer pruned that channel's columns)
computes an output nobody uses. The objective still counts its scores as kept, so a solver may keep it;
dropping it changes nothing the network computes and frees its share of the budget (a dense layer's
latency, in the latency measure). Dropping rows can leave further channels unread upstream, so the
pass repeats to a fixed point. Protected groups (the model's outputs) are always read; input groups have
no producers; a group no layer consumes is an output, read whole. O(passes x total columns), passes <= the network's depth.

>>> import numpy as np
>>> from rcprune.network.builder import NetworkBuilder
>>> from rcprune import NetworkSolution
>>> b = NetworkBuilder("chain")
>>> x = b.input("x", 1)
>>> h = b.layer("a", np.ones((2, 1)), x)
>>> y = b.layer("b", np.ones((1, 2)), h, protected=True)
>>> net = b.build(budget=4)
>>> sol = NetworkSolution({"a": ([1, 1], [1]), "b": ([1], [1, 0])})
>>> drop_unread_rows(net, sol)["a"]
Solution(rows=[0], cols=[0])
"""
from __future__ import annotations

import numpy as np

from rcprune.network.model import NetworkInstance, NetworkSolution, check_network_solution

__all__ = ["drop_unread_rows", "read_channels", "input_reaches_outputs"]


def read_channels(instance: NetworkInstance, solution: NetworkSolution) -> dict[str, np.ndarray]:
    """Per group, which channels some consumer reads through a kept effective column (counting as read:
    fixed channels, which must stay, and every channel of a group no layer consumes: a network output)."""
    eff = solution.effective(instance)
    read = {g.name: g.fixed_mask | (not g.consumers) for g in instance.groups}
    for li in instance.layers:
        blocks = eff[li.name].cols.reshape(li.in_channels, li.block).any(axis=1)
        if not eff[li.name].rows.any():
            continue  # a layer without kept rows reads nothing
        for g, off in li.inputs:
            read[g] |= blocks[off:off + instance.group(g).size]
    return read


def drop_unread_rows(instance: NetworkInstance, solution: NetworkSolution) -> NetworkSolution:
    """``solution`` without the kept rows of channels no consumer reads, repeated to a fixed point (see the
    module docstring). Never adds anything: kept count and spend can only fall, the computed function of a
    masked model is unchanged."""
    check_network_solution(instance, solution)
    layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in solution.items()}
    while True:
        read = read_channels(instance, NetworkSolution(layers))
        changed = False
        for li in instance.layers:
            rows = layers[li.name][0]
            unread = rows & ~read[li.output]
            if unread.any():
                rows &= ~unread
                changed = True
        if not changed:
            return NetworkSolution(layers)


def input_reaches_outputs(instance: NetworkInstance, solution: NetworkSolution) -> tuple[bool, list[str]]:
    """Whether every output group (protected, or consumed by no layer) still depends on a network input:
    a channel carries input signal when a producer keeps its row and reads some signal-carrying channel
    through a kept effective column. Returns that and the groups no signal reaches. A solution that fails
    computes a constant for every input (e.g. a latency budget removed the stem). O(passes x total
    columns), one pass when the layers are in topological order."""
    eff = solution.effective(instance)
    reached = {g.name: np.full(g.size, g.input) for g in instance.groups}
    changed = True
    while changed:
        changed = False
        for li in instance.layers:
            s = eff[li.name]
            if not s.rows.any() or reached[li.output][s.rows].all():
                continue
            blocks = s.cols.reshape(li.in_channels, li.block).any(axis=1)
            carried = np.concatenate([reached[g] for g, _ in li.inputs])
            if (blocks & carried).any():
                reached[li.output] |= s.rows
                changed = True
    outputs = [g.name for g in instance.groups if (g.protected or not g.consumers) and not g.input]
    return all(reached[g].any() for g in outputs), [g for g, r in reached.items() if not r.any()]
