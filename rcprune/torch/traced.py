"""What the tracer knows while it walks a model: each traced tensor's channel group and support
(:class:`NodeInfo`), and the walk's shared state (:class:`Trace`) that the coupling rules read and extend.

A *coupling rule* is one function ``rule(trace, node, module, sources) -> bool`` in a module of its own
(:mod:`rcprune.torch.extract_tied`, :mod:`rcprune.torch.extract_gate`): it returns False when the node is
not its kind, else records what the node does to channels (an entry of ``trace.values``, a builder call,
an entry of ``trace.ops`` for compaction and masking) and returns True.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.fx as fx
import torch.nn as nn

from rcprune.network.builder import NetworkBuilder

__all__ = ["NodeInfo", "Trace", "TiedConv", "tensor_shape", "target_name"]


@dataclass(frozen=True)
class NodeInfo:
    """A traced tensor: its channel group (instance name), its *support* (the layers whose kept rows can
    make its channels non-zero; ``None`` = every channel, e.g. a network input) and, after a flatten,
    the spatial size of each channel's block. A concatenation of channel groups
    (:mod:`rcprune.torch.extract_concat`) has no group of its own: ``parts`` are its segments in channel
    order, each a tensor of one group (``group`` and ``support`` are then ``None``). ``axis`` is the
    channel dimension: 1 (``(N, C, ...)``), or the last after a permute to channels-last or in a token
    tensor ``(N, L, C)`` (:mod:`rcprune.torch.extract_layout`)."""

    group: str | None
    support: frozenset | None
    spatial: tuple[int, ...] | None = None
    flat: bool = False
    parts: tuple["NodeInfo", ...] = ()
    axis: int = 1

    @property
    def segments(self) -> tuple["NodeInfo", ...]:
        """The one-group tensors this tensor's channels are, in order: its parts, else itself."""
        return self.parts or (self,)


@dataclass(frozen=True)
class TiedConv:
    """A grouped conv whose output channel ``c`` is tied to its input channel ``c`` (``groups > 1``,
    ``C_in == C_out``; depthwise when ``groups == C_in``): the channel keeps or loses its row and its
    column block together. ``node`` is the traced node, ``weight_shape`` ``(C, C // groups, kh, kw)``."""

    module: str
    node: str
    groups: int
    weight_shape: tuple[int, ...]
    has_bias: bool


@dataclass
class Trace:
    """The walk's state: the builder, each tracked node's info (raw builder group names), the model's
    modules, ``refuse(node, why)``, and what the coupling rules record: ``ops`` (node -> kind, the key of
    compaction's handler), ``tied`` (module -> :class:`TiedConv`), and for
    :mod:`rcprune.torch.extract_shuffle` the pieces of each split and the tensors inside a channel shuffle."""

    builder: NetworkBuilder
    values: dict[str, NodeInfo]
    modules: dict[str, nn.Module]
    refuse: Callable[[fx.Node, str], None]
    ops: dict[str, str] = field(default_factory=dict)
    tied: dict[str, TiedConv] = field(default_factory=dict)
    pieces: dict[str, tuple[int, ...]] = field(default_factory=dict)   # split node -> channels per piece
    regrouped: set[str] = field(default_factory=set)                    # inside a channel shuffle

    def protect(self, sources: list[fx.Node]) -> None:
        """Keep every channel the traced tensors ``sources`` carry (each segment's group protected)."""
        for s in sources:
            for seg in self.values[s.name].segments:
                self.builder.protect(seg.group)


def tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def target_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))
