"""Coupling rule: a grouped conv with as many output as input channels ties output channel ``c`` to input
channel ``c``, so it passes its input's channel group through, like a BatchNorm.

A depthwise conv (``groups == C_in == C_out``) computes channel ``c`` from channel ``c`` alone: its
``kh*kw`` weights per channel follow the channel, and removing the channel removes them. A grouped conv
with ``G`` groups of ``n = C / G`` channels computes output ``c`` from the ``n`` inputs of ``c``'s group;
tying output ``c`` to input ``c`` keeps, in every group, the same channels on both sides, so each group stays
a square RC matrix over its kept channels and compaction gives an equivalent grouped conv
(:mod:`rcprune.torch.compact_tied`). The masked model zeroes the weights of a removed channel's row and
column (its output is zero, as compaction makes it). The tied conv is not a layer of the instance: its
weights are not in the budget and its scores not in the objective (``docs/architectures.md`` says why).
A grouped conv with ``C_in != C_out`` (a channel multiplier) has no such tie and is refused.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> m = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1), torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Conv2d(4, 2, 1))
>>> ext = extract(m, torch.zeros(1, 2, 5, 5), sparsity=0.5)
>>> ext.instance.layer_names, ext.tied["1"].groups, ext.nodes["_1"].group
(('0', '2'), 4, '0:out')
"""
from __future__ import annotations

import torch.fx as fx
import torch.nn as nn

from rcprune.torch.traced import NodeInfo, TiedConv, Trace

__all__ = ["tied_conv"]


def tied_conv(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Record ``node`` as a tied conv when it is a grouped conv; refuse one that cannot be tied."""
    if not isinstance(mod, nn.Conv2d) or mod.groups == 1:
        return False
    src = t.values[sources[0].name]
    if mod.in_channels != mod.out_channels:
        t.refuse(node, f"grouped conv (groups={mod.groups}) with {mod.in_channels} input and {mod.out_channels} "
                       "output channels: only C_in == C_out ties each output channel to an input channel")
    elif mod.padding_mode != "zeros":
        t.refuse(node, f"padding_mode {mod.padding_mode!r}")
    elif src.flat or src.axis != 1:
        t.refuse(node, "conv on a flattened or channels-last tensor")
    elif node.target in t.tied:
        t.refuse(node, "the module is called more than once (shared weights)")
    else:
        t.tied[node.target] = TiedConv(node.target, node.name, mod.groups, tuple(mod.weight.shape),
                                       mod.bias is not None)
        t.ops[node.name] = "tied-conv"
        t.values[node.name] = NodeInfo(src.group, src.support)
    return True
