"""Coupling rule: a LayerNorm over the channel dim keeps its channel group whole.

LayerNorm normalizes each position by the mean and variance over its channels, so removing a channel
changes every other channel's output: a masked model that zeroes the channel would still count it in the
mean and variance, and compaction could not reproduce it. The rule therefore protects the group it
normalizes (every producer keeps all its rows: a transformer's residual stream, a ConvNeXt stage's
channels); the layers that read or write the group still prune their other side (an MLP's hidden
channels, a patch embedding's input columns). Its output may be non-zero on every channel (the LayerNorm's
bias). A LayerNorm over more than the channel dim is refused.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 8), torch.nn.Linear(8, 2))
>>> ext = extract(m, torch.zeros(1, 3, 4), sparsity=0.5)
>>> ext.instance.group("0:out").protected, ext.instance.group("2:out").protected
(True, False)
"""
from __future__ import annotations

import dataclasses

import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.torch.traced import Trace, tensor_shape

__all__ = ["layer_norm"]


def layer_norm(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Protect the group a LayerNorm normalizes; its output keeps the group, support every channel."""
    if isinstance(mod, nn.LayerNorm):
        normalized = tuple(mod.normalized_shape)
    elif node.op == "call_function" and node.target is F.layer_norm:
        normalized = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
        normalized = tuple(normalized) if isinstance(normalized, (list, tuple)) else (normalized,)
    else:
        return False
    src, shape = t.values[sources[0].name], tensor_shape(sources[0])
    if src.flat or shape is None or src.axis != len(shape) - 1 or normalized != (shape[-1],):
        t.refuse(node, f"LayerNorm over {normalized} of a tensor of shape {shape} with channels on dim "
                       f"{src.axis}: only a LayerNorm over the channel dim, last, is followed")
        return True
    t.protect(sources[:1])
    t.values[node.name] = dataclasses.replace(src, support=None)
    t.ops[node.name] = "full"
    return True
