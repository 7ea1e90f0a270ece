"""Coupling rule: a concatenation along the channel dim lays several channel groups side by side.

``torch.cat([a, b], 1)`` has no group of its own: its channels are ``a``'s group, then ``b``'s, each a
*segment* that keeps its group and support (:attr:`rcprune.torch.traced.NodeInfo.parts`); a concatenation
of concatenations lists the segments of each in order. Channel ops (activations, pooling, dropout,
BatchNorm, a flatten) carry the segments; a conv or linear layer reading the concatenation reads each
segment's group in turn (its ``inputs``: the channel offsets map its columns to each producer's rows), so
removing channel ``c`` of ``b``'s group frees that layer's columns at ``b``'s offset plus ``c``. A
BatchNorm on the concatenation masks each segment by its own support. Any other op on a concatenation, a
channel concatenation of a tensor the tracer does not follow, or of a group twice is refused. A
concatenation along another dim (tokens) keeps the channels: its traced operands' groups merge.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> class Fire(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b, self.c = torch.nn.Conv2d(2, 3, 1), torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Conv2d(7, 2, 1)
...     def forward(self, x):
...         return self.c(torch.relu(torch.cat([self.a(x), self.b(x)], 1)))
>>> ext = extract(Fire(), torch.zeros(1, 2, 4, 4), sparsity=0.5)
>>> ext.instance.layer("c").inputs
(('a:out', 0), ('b:out', 3))
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from rcprune.validation import InvalidInstanceError

from rcprune.torch.traced import NodeInfo, Trace, tensor_shape

__all__ = ["concat", "cat_operands", "CAT_FUNCTIONS"]

CAT_FUNCTIONS = {torch.cat, torch.concat, getattr(torch, "concatenate", torch.cat)}


def cat_operands(node: fx.Node):
    """A concatenation node's ``(tensors, dim)`` as written (positional or keyword)."""
    args = list(node.args)
    tensors = args[0] if args else node.kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    return tensors, dim


def concat(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Record a channel concatenation's segments; refuse one the tracer cannot follow."""
    if not (node.op == "call_function" and node.target in CAT_FUNCTIONS):
        return False
    tensors, dim = cat_operands(node)
    shape = tensor_shape(node)
    if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) or shape is None or len(shape) < 2:
        t.refuse(node, "a concatenation needs a list of tensors and a constant dim")
        return True
    axis = t.values[sources[0].name].axis
    if dim % len(shape) != axis:
        return _along_positions(t, node, tensors, sources, axis)
    if not all(isinstance(a, fx.Node) and a.name in t.values for a in tensors):
        t.refuse(node, "concatenates a tensor outside the pruned channels (a constant or an untraced value)")
        return True
    infos = [t.values[a.name] for a in tensors]
    if any(i.flat for i in infos):
        t.refuse(node, "concatenation of flattened tensors")
        return True
    segments = tuple(s for i in infos for s in i.segments)
    groups = [t.builder.root(s.group) for s in segments]
    if len(set(groups)) != len(groups):
        t.refuse(node, f"concatenates channel group(s) {sorted({g for g in groups if groups.count(g) > 1})} "
                       "more than once")
        return True
    if any(i.axis != 1 for i in infos):
        t.refuse(node, "concatenation of channels-last tensors")
        return True
    t.values[node.name] = NodeInfo(None, None, parts=segments)
    t.ops[node.name] = "cat"
    return True


def _along_positions(t: Trace, node: fx.Node, tensors, sources: list[fx.Node], axis: int) -> bool:
    """A concatenation along another dim than the channels' (tokens: a class token before the patches)
    lays the same channels side by side: the traced tensors' groups become one, as in an add; a constant
    operand may be non-zero on every channel (support ``None``). Compaction runs it on full-size tensors."""
    infos = [t.values[s.name] for s in sources]
    if any(i.flat or i.parts or i.axis != axis for i in infos):
        t.refuse(node, "concatenation along positions of tensors whose channels are not all on the same dim")
        return True
    try:
        group = t.builder.add(*(i.group for i in infos))
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"node {node.name!r}: {exc}") from None
    constant = len(sources) < len(tensors) or any(i.support is None for i in infos)
    support = None if constant else frozenset().union(*(i.support for i in infos))
    t.values[node.name] = NodeInfo(group, support, axis=axis)
    t.ops[node.name] = "full"
    return True
