"""Unread rows: a kept row whose channel no consumer reads (every consumer pruned that channel's columns)
computes an output nobody uses. The objective still counts its scores as kept, so a solver may keep it;
dropping it changes nothing the network computes and frees its share of the budget (a dense layer's
latency, in the latency measure). Dropping rows can leave further channels unread upstream, so the
pass repeats to a fixed point. Protected groups (the model's outputs) are always read; input groups have
no producers; a group no layer consumes is an output, read whole.
:func:`drop_unread_flat` is the same on the flat arrays, in numba (a worklist), which
:func:`drop_unread_rows` runs and solvers that clean many candidate solutions call directly;
:func:`drop_unread_rows_reference` is the pass-by-pass numpy reference.

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

from rcprune.jit import jit
from rcprune.network.model import NetworkInstance, NetworkSolution, check_network_solution

__all__ = ["drop_unread_rows", "drop_unread_rows_reference", "read_channels", "input_reaches_outputs",
           "output_groups", "always_read", "drop_unread_flat"]


def output_groups(instance: NetworkInstance) -> list[str]:
    """The network's outputs: groups that are protected or that no layer consumes (inputs excepted)."""
    return [g.name for g in instance.groups if (g.protected or not g.consumers) and not g.input]


def _read_anyway(group) -> np.ndarray:
    """Channels of ``group`` read whatever the consumers keep: fixed ones, and all of a group no layer consumes."""
    return group.fixed_mask | (not group.consumers)


def read_channels(instance: NetworkInstance, solution: NetworkSolution) -> dict[str, np.ndarray]:
    """Per group, which channels some consumer reads through a kept effective column (counting as read:
    fixed channels, which must stay, and every channel of a group no layer consumes: a network output)."""
    eff = solution.effective(instance)
    read = {g.name: _read_anyway(g) for g in instance.groups}
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
    masked model is unchanged. Runs :func:`drop_unread_flat` (O(rows + columns));
    :func:`drop_unread_rows_reference` is the same written from the definition."""
    check_network_solution(instance, solution)
    rows, cols = (a.copy() for a in solution.to_flat(instance))
    drop_unread_flat(instance.flat, always_read(instance), rows, cols)
    return NetworkSolution.from_flat(instance, rows, cols)


def drop_unread_rows_reference(instance: NetworkInstance, solution: NetworkSolution) -> NetworkSolution:
    """:func:`drop_unread_rows` by passes over the layers until nothing changes (numpy, the reference)."""
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
    return all(reached[g].any() for g in output_groups(instance)), [g for g, r in reached.items() if not r.any()]


def always_read(instance: NetworkInstance) -> np.ndarray:
    """Per global channel (:class:`rcprune.network.kernels.FlatNetwork` order), whether it counts as read
    whatever the consumers keep: fixed channels and every channel of a group no layer consumes."""
    return np.concatenate([_read_anyway(g) for g in instance.groups]).astype(np.bool_)


@jit(nogil=True)
def drop_unread_flat(net, read_anyway, rows, cols):
    """:func:`drop_unread_rows` on the flat arrays: clears, in place, the kept ``rows`` (global row mask)
    whose channel no consumer reads through a kept column in a layer with kept rows (``read_anyway``:
    :func:`always_read`), to the same fixed point. ``cols`` is not changed. Returns the number of rows
    dropped. A worklist instead of passes: ``readers[ch]`` counts the kept columns on ``ch`` in layers
    with kept rows; a channel at zero loses its rows, a layer that loses its last row stops reading.
    O(rows + columns)."""
    n_layers = net.m.shape[0]
    n_chan = net.chan_input.shape[0]
    n_rows = np.zeros(n_layers, np.int64)
    for i in range(rows.shape[0]):
        if rows[i]:
            n_rows[net.row_layer[i]] += 1
    readers = np.zeros(n_chan, np.int64)
    for j in range(cols.shape[0]):
        if cols[j] and n_rows[net.col_layer[j]] > 0:
            readers[net.col_chan[j]] += 1
    queue = np.empty(n_chan, np.int64)
    queued = np.zeros(n_chan, np.bool_)
    size = 0
    for ch in range(n_chan):
        if readers[ch] == 0 and not read_anyway[ch]:
            queue[size] = ch
            queued[ch] = True
            size += 1
    dropped = 0
    head = 0
    while head < size:
        ch = queue[head]
        head += 1
        for p in range(net.prod_ptr[ch], net.prod_ptr[ch + 1]):
            i = net.prod_row[p]
            if not rows[i]:
                continue
            rows[i] = False
            dropped += 1
            l = net.row_layer[i]
            n_rows[l] -= 1
            if n_rows[l] == 0:   # the layer reads nothing any more
                for j in range(net.col_off[l], net.col_off[l + 1]):
                    if cols[j]:
                        c = net.col_chan[j]
                        readers[c] -= 1
                        if readers[c] == 0 and not read_anyway[c] and not queued[c]:
                            queue[size] = c
                            queued[c] = True
                            size += 1
    return dropped
