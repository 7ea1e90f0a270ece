"""Coupling rules of channel splits and channel shuffles (ShuffleNet): opaque reorderings of whole channels.

``x1, x2 = x.chunk(2, dim=1)`` gives each piece a slice of ``x``'s channels, and a channel shuffle
(``x.view(N, g, C // g, H, W).transpose(1, 2).contiguous().view(N, C, H, W)``) interleaves a concatenation's
parts. A consumer of either reads a subset of a group's channels in an arbitrary order, which the network
model cannot say (a consumer reads whole groups at offsets, :attr:`rcprune.network.model.LayerInfo.inputs`).
So both are opaque, as an excluded op is, by design rather than by refusal: the groups they read are
protected (every producer keeps all its rows), and what they give is a new channel group that is always
alive (one per piece of a split). Layers around them still prune: a ShuffleNet branch's hidden channels (its
first 1x1 conv's rows, the depthwise conv tied to them, the last 1x1 conv's columns) and the columns of
every consumer. Compaction runs them as they are on full-size tensors.

A split is ``chunk`` or ``split`` along dim 1 (method or function); a shuffle starts at a view or reshape
that splits the channel dim of an ``(N, C, ...)`` tensor into two dims, may transpose those two (and make the
tensor contiguous), and ends at the view or reshape that merges them back into ``C`` channels; anything
else on a tensor inside a shuffle is refused.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> class Unit(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b, self.c = torch.nn.Conv2d(2, 4, 1), torch.nn.Conv2d(2, 2, 1), torch.nn.Conv2d(4, 3, 1)
...     def forward(self, x):
...         x1, x2 = self.a(x).chunk(2, dim=1)
...         y = torch.cat([x1, self.b(x2)], 1)
...         return self.c(y.view(1, 2, 2, 3, 3).transpose(1, 2).contiguous().view(1, 4, 3, 3))
>>> ext = extract(Unit(), torch.zeros(1, 2, 3, 3), sparsity=0.5)
>>> ext.instance.group("a:out").protected, ext.instance.group("b:out").protected, ext.instance.layer("c").inputs
(True, True, (('view:shuffled', 0),))
"""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn

from rcprune.torch.traced import NodeInfo, Trace, tensor_shape

__all__ = ["split", "shuffle"]

_RESHAPES = {"view", "reshape"}


def _split_sizes(node: fx.Node, channels: int) -> tuple[int, ...] | None:
    """Channels per piece of a ``chunk`` / ``split`` along dim 1, or None if ``node`` is not one."""
    is_chunk = (node.op == "call_method" and node.target == "chunk") or node.target is torch.chunk
    is_split = (node.op == "call_method" and node.target == "split") or node.target is torch.split
    if node.op not in ("call_method", "call_function") or not (is_chunk or is_split):
        return None
    args = list(node.args[1:])
    how = args[0] if args else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections",
                                                                         node.kwargs.get("split_size")))
    dim = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
    if dim != 1:
        return ()
    if is_chunk and isinstance(how, int) and how > 0:
        size = -(-channels // how)
        return tuple(min(size, channels - i) for i in range(0, channels, size))
    if is_split and isinstance(how, int) and how > 0:
        return tuple(min(how, channels - i) for i in range(0, channels, how))
    if is_split and isinstance(how, (list, tuple)) and all(isinstance(v, int) for v in how) and sum(how) == channels:
        return tuple(how)
    return ()


def split(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """A split of the channels: the groups read protected, one new always-alive group per piece (read by
    ``getitem``)."""
    if node.op == "call_function" and node.target is operator.getitem and sources[0].name in t.pieces:
        i, pieces = node.args[1], t.pieces[sources[0].name]
        if not isinstance(i, int) or not -len(pieces) <= i < len(pieces):
            t.refuse(node, f"indexing a channel split with {i!r}")
            return True
        t.values[node.name] = NodeInfo(t.builder.input(f"{node.name}:piece", pieces[i]), None)
        t.ops[node.name] = "opaque"
        return True
    src, in_shape = t.values[sources[0].name], tensor_shape(sources[0])
    sizes = _split_sizes(node, in_shape[1] if in_shape and len(in_shape) > 1 else 0)
    if sizes is None:
        return False
    if not sizes or src.flat or src.axis != 1:
        t.refuse(node, "a split along another dim than the channels of an (N, C, ...) tensor, or by sizes that "
                       "are not constants")
        return True
    t.protect(sources)
    t.pieces[node.name] = sizes
    t.values[node.name] = NodeInfo(t.builder.input(f"{node.name}:whole", in_shape[1]), None)
    t.ops[node.name] = "opaque"
    return True


def shuffle(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """The ops of a channel shuffle: the view that splits the channel dim (its groups protected), a transpose
    of the two channel dims, ``contiguous``, and the view that merges them back (a new always-alive group)."""
    inside = [s for s in sources if s.name in t.regrouped]
    shape, in_shape = tensor_shape(node), tensor_shape(sources[0])
    is_reshape = node.op == "call_method" and node.target in _RESHAPES
    if not inside:
        src = t.values[sources[0].name]
        if not (is_reshape and shape and in_shape and len(shape) == len(in_shape) + 1 and len(in_shape) >= 2
                and src.axis == 1 and not src.flat and shape[0] == in_shape[0]
                and shape[1] * shape[2] == in_shape[1] and shape[3:] == in_shape[2:]):
            return False
        t.protect(sources)
        t.values[node.name] = NodeInfo(t.builder.input(f"{node.name}:shuffled", in_shape[1]), None)
    else:
        info = t.values[inside[0].name]
        swap = node.op in ("call_method", "call_function") and node.target in ("transpose", torch.transpose) \
            and sorted(d % len(in_shape) for d in node.args[1:3]) == [1, 2]
        back = is_reshape and shape and len(shape) == len(in_shape) - 1 and shape[0] == in_shape[0] \
            and shape[1] == in_shape[1] * in_shape[2] and shape[2:] == in_shape[3:]
        if len(sources) != 1 or not (swap or back or (node.op == "call_method" and node.target == "contiguous")):
            t.refuse(node, "an op inside a channel shuffle other than transposing the two channel dims, contiguous "
                           "and the view back to (N, C, ...)")
            return True
        t.values[node.name] = info
        if back:
            t.ops[node.name] = "opaque"
            return True
    t.regrouped.add(node.name)
    t.ops[node.name] = "opaque"
    return True
