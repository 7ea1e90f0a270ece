"""Compaction of the layout, norm, attention and constant rules (:mod:`rcprune.torch.extract_layout`,
:mod:`rcprune.torch.extract_norm`, :mod:`rcprune.torch.extract_attention`,
:mod:`rcprune.torch.extract_constant`):

- ``merge``: ``torch.flatten`` over the merged dims (the original reshape names the channel count, which
  compaction changes);
- ``full``: the op as it is on its input scattered to the group's full channel count (a LayerNorm over all
  channels, a parameter that broadcasts against them); the output holds every channel;
- ``opaque``: a multi-head attention as it is, on full-size inputs.
Permutes and indexing are ``channelwise`` (:mod:`rcprune.torch.compact`): they run as they are.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.fx as fx

from rcprune.torch.extract_layout import merged_span
from rcprune.torch.traced import tensor_shape

__all__ = ["LAYOUT_HANDLERS"]


def _merge(b, node: fx.Node) -> None:
    src = b.tracked_inputs(node)[0]
    start, end = merged_span(tensor_shape(src), tensor_shape(node), b.extraction.nodes[src.name].axis)
    if src.name in b.zeros:
        b.zeros.add(node.name)
    b.env[node.name] = b.graph.call_function(torch.flatten, (b.env[src.name], start, end))
    b.chan[node.name] = b.chan[src.name]


def _full(b, node: fx.Node) -> None:
    b.env[node.name] = b.copy_node(node, b.full)
    b.chan[node.name] = np.arange(b.group_size(node))


LAYOUT_HANDLERS: dict[str, Callable] = {"merge": _merge, "full": _full}
