"""Coupling rule: a traced tensor times or plus a tensor that does not depend on the pruned channels (a
parameter: ConvNeXt's layer scale, a Vision Transformer's position embedding).

The product keeps the traced tensor's group and support (zero times anything is zero); the sum keeps the
group, but its output may be non-zero on every channel (support ``None``). The constant broadcasts
against the traced tensor's full channel count, so compaction scatters the traced tensor to its full
channels first and runs the op as it is (:mod:`rcprune.torch.compact_layout`); a constant that would
change the traced tensor's shape is refused.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> class Scaled(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b = torch.nn.Conv2d(2, 4, 1), torch.nn.Conv2d(4, 2, 1)
...         self.gamma = torch.nn.Parameter(torch.ones(4, 1, 1))
...     def forward(self, x):
...         return self.b(self.gamma * self.a(x))
>>> ext = extract(Scaled(), torch.zeros(1, 2, 3, 3), sparsity=0.5)
>>> ext.ops["mul"], ext.nodes["mul"].support
('full', frozenset({'a'}))
"""
from __future__ import annotations

import dataclasses
import operator

import torch
import torch.fx as fx
import torch.nn as nn

from rcprune.torch.traced import Trace, tensor_shape

__all__ = ["constant"]

_MUL = {operator.mul, operator.imul, torch.mul}
_ADD = {operator.add, operator.iadd, torch.add}


def constant(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Record ``traced * constant`` or ``traced + constant`` (either order)."""
    if node.op != "call_function" or node.target not in _MUL | _ADD or len(sources) != 1 or node.kwargs:
        return False
    others = [a for a in node.args if isinstance(a, fx.Node) and a is not sources[0]]
    if len(others) != 1 or len(node.args) != 2:
        return False
    src = t.values[sources[0].name]
    if tensor_shape(node) != tensor_shape(sources[0]) or src.flat:
        t.refuse(node, f"a constant operand changes the traced tensor's shape {tensor_shape(sources[0])} to "
                       f"{tensor_shape(node)} (or the tensor is flattened)")
        return True
    support = src.support if node.target in _MUL else None
    t.values[node.name] = dataclasses.replace(src, support=support)
    t.ops[node.name] = "full"
    return True
