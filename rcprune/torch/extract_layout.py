"""Coupling rules of layout ops: where a tensor's channels sit changes, which channels it has does not.

Channels-last blocks (ConvNeXt) and token tensors (a Vision Transformer's ``(N, L, C)``) keep a channel
group on another dim than 1 (:attr:`rcprune.torch.traced.NodeInfo.axis`):

- ``permute`` / ``transpose`` (batch dim left in place) move the channel dim;
- a reshape, view or flatten that merges neighbouring dims other than the batch and channel dims (a
  patch grid ``(N, C, H, W)`` to ``(N, C, H*W)``) keeps every channel's values in that channel;
- indexing that leaves the channel dim whole (``x[:, 0]``, the class token) keeps the channels;
- a mean, sum or max over dims other than the batch and channel dims (ShuffleNet's global pool
  ``x.mean([2, 3])``) keeps the channels, and a zero channel stays zero.

Each keeps the group and support of its input; a Linear layer reads a tensor whose channel dim is the
last (:func:`rcprune.torch.extract.extract`). Compaction runs permutes and indexing as they are (they do
not name a channel count) and a merge as ``torch.flatten`` over the merged dims
(:mod:`rcprune.torch.compact_layout`).

>>> import torch
>>> from rcprune.torch.extract import extract
>>> class Tokens(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.patch, self.fc1, self.fc2 = torch.nn.Conv2d(1, 4, 2, 2), torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
...     def forward(self, x):
...         t = self.patch(x).flatten(2).transpose(1, 2)          # (N, L, C)
...         return self.fc2(torch.relu(self.fc1(t)))[:, 0]
>>> ext = extract(Tokens(), torch.zeros(1, 1, 4, 4), sparsity=0.5)
>>> ext.instance.layer("fc1").positions, ext.nodes["transpose"].axis
(4, 2)
"""
from __future__ import annotations

import dataclasses
import math
import operator

import torch
import torch.fx as fx
import torch.nn as nn

from rcprune.torch.traced import Trace, target_name, tensor_shape

__all__ = ["permute", "merge", "index", "reduce", "merged_span"]

_RESHAPE_METHODS = {"reshape", "view", "flatten"}


def _order(node: fx.Node, ndim: int) -> list[int] | None:
    """The dim order of a permute or transpose node (``None`` if ``node`` is neither)."""
    is_method = node.op == "call_method"
    if (is_method and node.target == "permute") or (node.op == "call_function" and node.target is torch.permute):
        dims = list(node.args[1:]) or [node.kwargs.get("dims")]
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = list(dims[0])
        return [d % ndim for d in dims] if all(isinstance(d, int) for d in dims) else []
    if (is_method and node.target == "transpose") or (node.op == "call_function" and node.target is torch.transpose):
        pair = list(node.args[1:3])
        if len(pair) != 2 or not all(isinstance(d, int) for d in pair):
            return []
        order = list(range(ndim))
        i, j = (d % ndim for d in pair)
        order[i], order[j] = order[j], order[i]
        return order
    return None


def permute(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """A permute or transpose that keeps the batch dim first moves the channel dim."""
    shape = tensor_shape(node)
    order = _order(node, len(shape or ()))
    if order is None:
        return False
    src = t.values[sources[0].name]
    if src.flat:
        t.refuse(node, "permute of a flattened tensor")
    elif len(order) != len(shape) or sorted(order) != list(range(len(shape))) or order[0] != 0:
        t.refuse(node, f"permute {order} of a {len(shape)}-d tensor: the dims must be constants and keep the batch dim first")
    else:
        t.values[node.name] = dataclasses.replace(src, axis=order.index(src.axis))
        t.ops[node.name] = "channelwise"
    return True


def merged_span(in_shape, shape, axis: int) -> tuple[int, int] | None:
    """``(start, end)`` when ``shape`` is ``in_shape`` with dims ``start..end`` merged into one, none of
    them the batch dim 0 or the channel dim ``axis``; else ``None``."""
    if len(shape) >= len(in_shape) or len(shape) < 2:
        return None
    start = next((i for i in range(len(shape)) if shape[i] != in_shape[i]), len(shape) - 1)
    end = start + len(in_shape) - len(shape)
    if in_shape[end + 1:] != shape[start + 1:] or math.prod(in_shape[start:end + 1]) != shape[start] \
            or start == 0 or start <= axis <= end:
        return None
    return start, end


def merge(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """A reshape to 3 or more dims that merges neighbouring non-channel dims keeps the channels (the
    flatten to ``(N, features)`` before a Linear layer is the built-in flatten, not this rule)."""
    is_reshape = (node.op == "call_method" and node.target in _RESHAPE_METHODS) or isinstance(mod, nn.Flatten) \
        or (node.op == "call_function" and node.target in (torch.flatten, torch.reshape))
    shape, in_shape = tensor_shape(node), tensor_shape(sources[0])
    src = t.values[sources[0].name]
    if not is_reshape or shape is None or len(shape) < 3 or src.flat:
        return False
    span = None if in_shape is None else merged_span(in_shape, shape, src.axis)
    if span is None:
        t.refuse(node, f"reshape from {in_shape} to {shape} does not only merge neighbouring dims other than the "
                       f"batch and the channel dim {src.axis}")
        return True
    t.values[node.name] = dataclasses.replace(src, axis=src.axis - (span[1] - span[0]) * (src.axis > span[1]))
    t.ops[node.name] = "merge"
    return True


def index(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """Indexing with constant ints and slices that leaves the batch and channel dims whole keeps the
    channels (an int before the channel dim moves it down by one)."""
    if not (node.op == "call_function" and node.target is operator.getitem) or tensor_shape(node) is None:
        return False
    src = t.values[sources[0].name]
    key = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    whole = slice(None, None, None)
    ok = not src.flat and len(key) <= len(tensor_shape(sources[0]) or ()) \
        and all(isinstance(k, (int, slice)) and not isinstance(k, bool) for k in key) \
        and all(isinstance(k.start, (int, type(None))) and isinstance(k.stop, (int, type(None)))
                for k in key if isinstance(k, slice)) \
        and key[0] == whole and (len(key) <= src.axis or key[src.axis] == whole)
    if not ok:
        t.refuse(node, f"indexing {node.args[1]!r}: only constant ints and slices that keep the batch and the "
                       f"channel dim {src.axis} whole")
        return True
    dropped = sum(isinstance(k, int) for k in key[:src.axis])
    t.values[node.name] = dataclasses.replace(src, axis=src.axis - dropped)
    t.ops[node.name] = "channelwise"
    return True


_REDUCE_METHODS = {"mean", "sum", "amax"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}


def reduce(t: Trace, node: fx.Node, mod: nn.Module | None, sources: list[fx.Node]) -> bool:
    """A mean, sum or max over constant dims other than the batch and channel dims keeps the channels."""
    if not ((node.op == "call_method" and node.target in _REDUCE_METHODS)
            or (node.op == "call_function" and node.target in _REDUCE_FUNCTIONS)):
        return False
    src, in_shape = t.values[sources[0].name], tensor_shape(sources[0])
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = [dims] if isinstance(dims, int) else dims
    keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    ndim = len(in_shape or ())
    if src.flat or not isinstance(dims, (list, tuple)) or not dims or not all(isinstance(d, int) for d in dims) \
            or not isinstance(keep, bool) or {d % ndim for d in dims} & {0, src.axis}:
        t.refuse(node, f"{target_name(node)} over dims {dims!r}: only over constant dims other than the batch and "
                       f"the channel dim {src.axis}")
        return True
    below = 0 if keep else sum(d % ndim < src.axis for d in dims)
    t.values[node.name] = dataclasses.replace(src, axis=src.axis - below)
    t.ops[node.name] = "channelwise"
    return True
