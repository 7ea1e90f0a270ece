"""A channel floor: every prunable channel group keeps at least a share of its channels.

Under a latency budget a layer's fixed overheads make removing it whole (or a residual block's inner
layers) the cheapest move, while the importance sum charges a thinned layer almost as much as a removed
one (keeping a third of the channels keeps a ninth of the entries); the network then loses depth that
fine-tuning cannot recover (``docs/pareto-mnist.md``). Channel pruning avoids this by construction
(Torch-Pruning prunes every layer by the same ratio, or caps each layer's ratio in global mode). The floor
is that cap as a constraint of the instance: in every group that is not a network input, the
``ceil(share * size)`` channels with the largest *channel score* are fixed: they stay alive
(every producer keeps their rows) and every consumer reads them (their column blocks are fixed), so the
floor is a channel-pruned core network, and the solvers choose everything above it under the budget.
Fixing rows alone is not enough: measured on the MNIST ResNet-20 at 2.9x, the solver then kept the
floor's rows but let the residual blocks' first convs read one input channel each.

The channel score is what removing the channel takes with it: over its producer rows and its consumer
column blocks, each layer's weighted scores ``w_l * S_l`` averaged over the entries of that row or block
(means, so a wide layer does not outvote a narrow one), summed. Choosing the floor by score before solving
keeps every solver, bound and evaluation exact: the floor is fixed rows and columns, which they all handle
(the bound relaxes a partial floor away, which keeps it valid).

>>> from rcprune.network.generate import chain_network
>>> net = channel_floor(chain_network(budget=30), 0.5)
>>> [(g.name, g.floor) for g in net.groups if g.floor]
[('conv1:out', (0, 2)), ('conv2:out', (0, 1)), ('conv3:out', (0,))]
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import networkx as nx
import numpy as np

from rcprune.network.model import NetworkInstance
from rcprune.validation import InvalidInstanceError, check_fraction

__all__ = ["channel_floor", "channel_scores", "fix_channels"]


def channel_scores(instance: NetworkInstance, mean: bool = True) -> dict[str, np.ndarray]:
    """Per group, each channel's score: the weighted mean score of its producer rows plus that of its
    consumer column blocks, summed over those layers; with ``mean=False`` their weighted sums
    (Torch-Pruning's L1 group importance). O(total entries)."""
    out = {g.name: np.zeros(g.size) for g in instance.groups}
    reduce = np.mean if mean else np.sum
    for l, li in enumerate(instance.layers):
        s = instance.scores[li.name] * float(instance.weights[l])
        out[li.output] += reduce(s, axis=1)
        blocks = reduce(s.reshape(li.rows, li.in_channels, li.block), axis=(0, 2))
        for g, off in li.inputs:
            out[g] += blocks[off:off + instance.group(g).size]
    return out


def fix_channels(instance: NetworkInstance, channels: Mapping[str, Sequence[int]]) -> NetworkInstance:
    """``instance`` with the given channels (indices) of each named group added to its floor: they stay
    alive and every consumer reads them. A floor the budget cannot pay for is an
    :class:`InvalidInstanceError` naming the least spend."""
    graph = nx.DiGraph(instance.graph)
    for g, idx in channels.items():
        gi = instance.group(g)
        if gi.input:
            raise InvalidInstanceError(f"group {g!r} is a network input: its channels are always alive")
        arr = np.asarray(idx).ravel()
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInstanceError(f"channels of group {g!r} must be integer indices, got {idx!r}")
        if arr.size and (arr.min() < 0 or arr.max() >= gi.size):
            raise InvalidInstanceError(f"channel indices of group {g!r} must be in [0, {gi.size})")
        graph.nodes[g]["floor"] = sorted(set(gi.floor) | {int(c) for c in arr})
    return instance.replace(graph=graph)


def channel_floor(instance: NetworkInstance, share: float) -> NetworkInstance:
    """``instance`` where every group that is not a network input keeps at least ``ceil(share * size)``
    channels read by every consumer: its top channels by :func:`channel_scores` (ties to the lower index)
    form its floor (a protected group keeps all its channels alive; its floor fixes what its consumers
    read). ``share = 0`` returns ``instance`` unchanged. O(total entries + channels log channels).

    A floor the budget cannot pay for is an :class:`InvalidInstanceError` naming the least spend."""
    share = check_fraction(share, "min_channels", allow_zero=True, allow_one=True)
    if share == 0:
        return instance
    scores = channel_scores(instance)
    fixed = {}
    for g in instance.groups:
        if g.input or not g.producers:
            continue
        k = math.ceil(share * g.size - 1e-9)
        fixed[g.name] = np.argsort(-scores[g.name], kind="stable")[:k]
    try:
        return fix_channels(instance, fixed)
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"a channel floor of {share:g} of every group does not fit: {exc}") from None
