"""Compaction of a channel concatenation (:mod:`rcprune.torch.extract_concat`): the compacted parts
concatenated in order.

Each part carries some channels of its group (the ones its support can make non-zero); the compact
concatenation holds those of each part in turn, so the channels it carries are each part's carried
channels shifted by the part's offset in the original concatenation. A consumer's kept columns are then
read at those channels (:func:`rcprune.torch.compact._kept`), which is where each segment's kept channels
sit; a part reduced to one zero channel (a producer without kept rows) stays as that channel, which no
kept column reads.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.fx as fx

from rcprune.torch.extract_concat import cat_operands

__all__ = ["CONCAT_HANDLERS"]


def _cat(b, node: fx.Node) -> None:
    parts, _ = cat_operands(node)
    chans, offset = [], 0
    for p in parts:
        chans.append(b.chan[p.name] + offset)
        offset += b.extraction.channel_count(b.extraction.nodes[p.name])
    b.env[node.name] = b.graph.call_function(torch.cat, ([b.env[p.name] for p in parts], 1))
    b.chan[node.name] = np.concatenate(chans)


CONCAT_HANDLERS: dict[str, Callable] = {"cat": _cat}
