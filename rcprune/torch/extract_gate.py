"""Coupling rules of squeeze-excitation: a gate (sigmoid, hard sigmoid) and the product that scales a
tensor's channels by it.

In ``y = x * sigmoid(fc2(relu(fc1(pool(x)))))`` the gate's channel ``c`` scales ``x``'s channel ``c``: the
product merges the two channel groups, as a residual add does, so ``fc2`` becomes a producer of ``x``'s group
and removing channel ``c`` removes ``fc2``'s row ``c`` with the producers' rows and the consumers' columns.
A gate maps 0 to 0.5, so its output may be non-zero on every channel (support ``None``): a gate channel
whose ``fc2`` row is pruned scales ``x`` by ``sigmoid(0)``, in the masked model and after compaction alike. The
product is zero wherever one factor is, so its support is one factor's: the first whose support is known
(:func:`carrier`), the same choice the compaction makes.

>>> import torch
>>> from torchvision.ops import SqueezeExcitation
>>> from rcprune.torch.extract import extract
>>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), SqueezeExcitation(8, 2), torch.nn.Conv2d(8, 2, 1))
>>> ext = extract(m, torch.zeros(1, 3, 4, 4), sparsity=0.5)
>>> ext.instance.group("0:out").producers
('0', '1.fc2')
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.validation import InvalidInstanceError

from rcprune.torch.traced import NodeInfo, Trace, tensor_shape

__all__ = ["gate", "scale", "carrier"]

_GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid)
_GATE_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid}
_MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}


def gate(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """A sigmoid-like op keeps its input's group; its output may be non-zero on every channel."""
    if not (isinstance(mod, _GATE_MODULES) or (node.op == "call_function" and node.target in _GATE_FUNCTIONS)
            or (node.op == "call_method" and node.target == "sigmoid")):
        return False
    src = t.values[sources[0].name]
    if src.flat and src.spatial != (1,):
        t.refuse(node, "gate on a flattened tensor")
        return True
    t.values[node.name] = NodeInfo(src.group, None, src.spatial, src.flat, axis=src.axis)
    t.ops[node.name] = "gate"
    return True


def carrier(infos: Sequence[NodeInfo]) -> int:
    """Which factor of a product gives its support: the first whose support is known (else the first)."""
    return next((i for i, info in enumerate(infos) if info.support is not None), 0)


def scale(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """The product of two traced tensors with the same channels merges their groups; a traced tensor times a
    number keeps its group."""
    if not ((node.op == "call_function" and node.target in _MUL_FUNCTIONS)
            or (node.op == "call_method" and node.target in ("mul", "mul_"))):
        return False
    tensors = [a for a in node.args if isinstance(a, fx.Node)]
    if len(sources) == 1 and len(tensors) == 1 and not node.kwargs \
            and all(isinstance(a, (int, float)) for a in node.args if not isinstance(a, fx.Node)):
        t.values[node.name] = t.values[sources[0].name]   # times a number: zero stays zero, channels stay
        return True
    if len(sources) != 2 or len(tensors) != 2 or node.kwargs:
        t.refuse(node, "a product must have two traced tensors (a factor outside the pruned channels "
                       "cannot follow them)")
        return True
    infos = [t.values[s.name] for s in sources]
    shapes = [tensor_shape(s) for s in sources]
    if any(i.flat or i.axis != 1 for i in infos) or any(s is None or len(s) < 2 for s in shapes) \
            or shapes[0][1] != shapes[1][1]:
        t.refuse(node, f"a product scales channels only between unflattened tensors of the same channels, "
                       f"got shapes {shapes}")
        return True
    try:
        group = t.builder.add(infos[0].group, infos[1].group)
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"node {node.name!r}: {exc}") from None
    t.values[node.name] = NodeInfo(group, infos[carrier(infos)].support)
    t.ops[node.name] = "scale"
    return True
