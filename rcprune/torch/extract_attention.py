"""Coupling rule: ``nn.MultiheadAttention`` as one opaque op (its heads are not pruned yet).

The attention reads every channel of its query, key and value through its packed input projection, whose
weights are not layers of the instance; so its inputs' groups are protected (kept whole), as an excluded
op's are, and its output is a new channel group that is always alive (``embed_dim`` channels, on the last
dim of a ``batch_first`` ``(N, L, E)`` tensor). Compaction runs the module as it is. ``x, _ = attn(...)``
reads the output tensor with ``getitem 0`` (the attention weights, ``getitem 1``, are not channels).

>>> import torch
>>> from rcprune.torch.extract import extract
>>> class Block(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.fc, self.attn = torch.nn.Linear(4, 4), torch.nn.MultiheadAttention(4, 2, batch_first=True)
...         self.out = torch.nn.Linear(4, 2)
...     def forward(self, x):
...         h = self.fc(x)
...         a, _ = self.attn(h, h, h, need_weights=False)
...         return self.out(a + h)
>>> ext = extract(Block(), torch.zeros(1, 3, 4), sparsity=0.5)
>>> ext.instance.group("fc:out").protected, ext.instance.group("fc:out").input
(True, True)
"""
from __future__ import annotations

import operator

import torch.fx as fx
import torch.nn as nn

from rcprune.torch.traced import NodeInfo, Trace

__all__ = ["attention"]


def attention(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Record a multi-head attention as opaque, and ``getitem`` of its output tuple."""
    src = sources[0]
    if node.op == "call_function" and node.target is operator.getitem and src.op == "call_module" \
            and isinstance(t.modules.get(src.target), nn.MultiheadAttention):
        if node.args[1] == 0:
            t.values[node.name] = t.values[sources[0].name]
            t.ops[node.name] = "channelwise"
        return True   # the attention weights: not a channel tensor
    if not isinstance(mod, nn.MultiheadAttention):
        return False
    if not mod.batch_first:
        t.refuse(node, "MultiheadAttention with batch_first=False (the batch must be dim 0)")
        return True
    t.protect(sources)
    t.values[node.name] = NodeInfo(t.builder.input(f"{node.name}:out", mod.embed_dim), None, axis=2)
    t.ops[node.name] = "opaque"
    return True
