"""Compaction of the coupled ops of :mod:`rcprune.torch.extract_tied` and :mod:`rcprune.torch.extract_gate`:
one handler per kind of :attr:`rcprune.torch.Extraction.ops`, on the state of :func:`rcprune.torch.compact`.

- ``tied-conv``: the carried channels' grouped conv. Group ``g`` keeps the carried channels ``K_g`` on
  both sides (the tie), a square ``|K_g| x |K_g|`` block of its weights; when every group that keeps a
  channel keeps the same number, this is a smaller grouped conv over those groups (a depthwise conv stays
  depthwise), else each group is padded to the widest with zero weights (:class:`GroupedConv`), exact
  either way. A BatchNorm that alone reads it folds in (``fold_batchnorm``, as after a pruned conv).
- ``gate`` runs as it is on its input scattered to the full group (a gate maps 0 to non-zero): the
  ``untracked`` handler of :mod:`rcprune.torch.compact`.
- ``scale``: the carrier factor's channels (:func:`rcprune.torch.extract_gate.carrier`) times the other
  factor, scattered to the full group and gathered at those channels.
"""
from __future__ import annotations

import operator
from typing import Callable

import numpy as np
import torch
import torch.fx as fx

from rcprune.torch.compact_forms import ChannelSelect, GroupedConv, RCConv2d, batchnorm_folded
from rcprune.torch.extract_gate import carrier

__all__ = ["COUPLED_HANDLERS", "grouped_weights"]


def grouped_weights(weight: torch.Tensor, bias: torch.Tensor | None, kept: np.ndarray, groups: int):
    """The compact grouped conv of a tied conv whose carried channels are ``kept`` (sorted): ``(weight,
    bias, in_index, out_index, groups)`` for :class:`GroupedConv` (indices into the carried channels)."""
    n = weight.shape[1]
    group_of = kept // n
    used, start, counts = np.unique(group_of, return_index=True, return_counts=True)
    width = int(counts.max())
    rank = np.arange(len(kept)) - np.repeat(start, counts)           # position within its group's kept
    slot = np.repeat(np.arange(len(used)), counts) * width + rank    # the channel's slot in the compact conv
    w = weight.new_zeros((len(used) * width, width) + tuple(weight.shape[2:]))
    # every (kept output, kept input) pair of a group at once: group g's c x c block of weight[out, in - g n]
    pairs = counts * counts
    g = np.repeat(np.arange(len(used)), pairs)
    local = np.arange(int(pairs.sum())) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    r, r2 = local // counts[g], local % counts[g]
    src_out, src_in = kept[start[g] + r], kept[start[g] + r2] - used[g] * n
    w[torch.as_tensor(g * width + r), torch.as_tensor(r2)] = weight[torch.as_tensor(src_out), torch.as_tensor(src_in)]
    b = None
    if bias is not None:
        b = bias.new_zeros(len(used) * width)
        b[slot] = bias[kept]
    if (counts == width).all():
        return w, b, None, None, len(used)
    in_index = np.repeat(start, width)                                # padding reads the group's first channel
    in_index[slot] = np.arange(len(kept))
    return w, b, in_index, slot, len(used)


def _tied_conv(b, node: fx.Node) -> None:
    src = b.tracked_inputs(node)[0]
    b.chan[node.name] = b.chan[src.name]
    mod = b.modules[node.target]
    if src.name in b.zeros:         # no carried channel: one zero channel at the output's size (bias masked)
        b.zeros.add(node.name)
        empty = RCConv2d(mod.weight.detach().new_zeros(1, 0), None, None, None, mode="empty",
                         kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
        b.env[node.name] = b.graph.call_module(b.new_module(empty, node.target), (b.env[src.name],))
        return
    weight, bias = mod.weight.detach(), None if mod.bias is None else mod.bias.detach()
    bn = b.foldable_batchnorm(node, mod)
    if bn is not None:      # an inference model: the BatchNorm after it folds in, as after a pruned conv
        weight, bias = batchnorm_folded(bn, np.arange(weight.shape[0]), weight, bias)
    w, bias, in_index, out_index, groups = grouped_weights(weight, bias, b.chan[src.name],
                                                          b.extraction.tied[node.target].groups)
    form = GroupedConv(w.contiguous(memory_format=torch.channels_last), bias, in_index, out_index, groups=groups,
                       stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
    form.train(mod.training)
    b.env[node.name] = b.graph.call_module(b.new_module(form, node.target), (b.env[src.name],))


def _scale(b, node: fx.Node) -> None:
    factors = [a for a in node.args if isinstance(a, fx.Node)]
    k = carrier([b.extraction.nodes[f.name] for f in factors])
    x, other = factors[k], factors[1 - k]
    b.chan[node.name] = b.chan[x.name]
    if x.name in b.zeros:
        b.zeros.add(node.name)
        b.env[node.name] = b.env[x.name]
        return
    g = b.full(other)
    if len(b.chan[x.name]) != b.group_size(node):
        g = b.graph.call_module(b.new_module(ChannelSelect(b.chan[x.name]), "select"), (g,))
    b.env[node.name] = b.graph.call_function(operator.mul, (b.env[x.name], g))


COUPLED_HANDLERS: dict[str, Callable] = {"tied-conv": _tied_conv, "scale": _scale}
