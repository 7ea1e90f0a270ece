"""Compaction of :mod:`rcprune.torch.extract_layout`'s ``merge``: ``torch.flatten`` over the merged dims
(the original reshape names the channel count, which compaction changes). Permutes, indexing and
reductions are ``channelwise`` (they run as they are); LayerNorm, constants, attention, splits and
shuffles run as they are on full-size inputs (``full``, ``opaque``: :mod:`rcprune.torch.compact`)."""
from __future__ import annotations

from typing import Callable

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


LAYOUT_HANDLERS: dict[str, Callable] = {"merge": _merge}
