"""Physical compaction: a new model whose pruned layers are smaller dense layers.

Guarantee: the compact model computes what the masked model computes (the same function of its inputs,
up to floating-point rounding: the kept products are summed in another order); it holds only the kept
weights of the pruned layers. ``compact`` walks the traced graph of the extraction once; every traced
tensor carries only the channels that can be non-zero (its support), and what each node becomes is one
entry of :data:`HANDLERS`, keyed by the node's kind (:func:`node_kind`):

- ``conv``: the kept rows, computed from the kept input channels. A layer whose kept columns cover whole
  channels is a smaller conv; one with partially kept channels (input channel x kernel position) is one
  GEMM on the kept im2col rows gathered from its input (``"im2col"``) or a conv over the touched channels
  with zeros (``"conv-zeros"``); one with no kept column is its bias (``"empty"``). The layer forms are
  :mod:`rcprune.torch.compact_forms`.
- ``linear``: the kept rows on the kept input features.
- ``batchnorm``: the statistics and affine parameters of the carried channels.
- ``add``: a residual add scatters each side into the union of their channels; a side with no live
  channel (a branch whose every row was pruned) is dropped, so the add is its other side.
- ``flatten``, ``channelwise`` (activations, pooling, dropout, ...): run as they are on the carried
  channels.
- ``untracked`` (excluded or outside the pruned groups), and every op that runs as it is on its inputs
  scattered to full size: ``gate`` (a gate maps 0 to non-zero), ``full`` (LayerNorm, a parameter that
  broadcasts against all channels, a concatenation along positions) and ``opaque`` (attention, channel
  splits and shuffles); a tracked result holds every channel of its group.
- ``placeholder``, ``output``: the inputs as they are; the outputs scattered back to full size.
- ``tied-conv``, ``scale``: grouped and depthwise convs, squeeze-excitation
  (:mod:`rcprune.torch.compact_tied`).
- ``cat``: a channel concatenation, the compacted parts in order (:mod:`rcprune.torch.compact_concat`);
  the channels a concatenation carries are indices into all its segments' channels.
- ``merge``: a reshape merging non-channel dims (:mod:`rcprune.torch.compact_layout`).

Cost of building: one pass over the graph plus one copy of the kept weights. Cost of running: a conv or
linear layer does rows x kept columns multiply-adds per output position in the ``"conv"``, ``"linear"``
and ``"im2col"`` forms (``"im2col"`` adds a gather of one value per kept column and output position),
rows x touched channels x kernel size in ``"conv-zeros"``; scatters are linear in the tensor's size.
Convolutions run channels-last. The result is a ``torch.fx.GraphModule`` (a normal ``nn.Module``;
``torch.export`` works on it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.utils import parametrize

from rcprune.network.model import NetworkSolution
from rcprune.validation import InvalidInstanceError, check_flag

from rcprune.torch.compact_forms import (_CL, ChannelScatter, ChannelScatterAdd, RCConv2d, RCLinear,
                                          batchnorm_folded)
from rcprune.torch.compact_concat import CONCAT_HANDLERS
from rcprune.torch.compact_layout import LAYOUT_HANDLERS
from rcprune.torch.compact_tied import COUPLED_HANDLERS
from rcprune.torch.extract import Extraction, extraction_of
from rcprune.torch.latency import measure_latency
from rcprune.torch.rcmask import rc_mask

__all__ = ["compact", "CompactReport", "RCConv2d", "RCLinear", "ChannelScatterAdd", "ChannelScatter"]

PARTIAL_MODES = ("auto", "im2col", "conv")


@dataclass(frozen=True)
class CompactReport:
    """Sizes before and after: parameters (all tensors), kept layer weights, multiply-adds per sample of
    the pruned layers (convs and linears only), and per layer its kept shape and mode."""

    params_before: int
    params_after: int
    weights_before: int
    weights_after: int
    macs_before: int
    macs_after: int
    layers: tuple = field(default=())

    @property
    def mac_ratio(self) -> float:
        return self.macs_before / max(self.macs_after, 1)

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in ("params_before", "params_after", "weights_before", "weights_after",
                                               "macs_before", "macs_after")} | {"mac_ratio": self.mac_ratio}


def layer_weight(module: nn.Module, rows=None, cols=None) -> torch.Tensor:
    """The weight ``compact`` reads from a pruned layer: ``module.weight``, which is the effective (masked)
    weight whether the model is masked, baked or unmasked, at ``rows`` (dim 0) and ``cols`` (dim 1) when
    given (index arrays; a copy). The one place that knows how masks are stored: under an :class:`RCMask`
    alone the kept part is selected before it is masked (a classifier's whole masked weight is 0.4 GB in
    VGG)."""
    def pick(t: torch.Tensor) -> torch.Tensor:
        for dim, idx in ((0, rows), (1, cols)):
            if idx is not None:
                t = t.index_select(dim, torch.as_tensor(np.asarray(idx, dtype=np.int64), device=t.device))
        return t

    rc = rc_mask(module, "weight")
    if rc is not None and len(module.parametrizations["weight"]) == 1:
        return pick(rc.value.detach()).masked_fill(~pick(rc.mask), 0)
    return pick(module.weight.detach())


# --- the state the handlers share -------------------------------------------------------------------------


class _Builder:
    """The compact graph under construction: ``env`` maps each original node to its compact node, ``chan``
    each tracked node to the channel indices (within its group) its compact tensor holds, ``root`` the
    compact model's modules by name."""

    def __init__(self, model: nn.Module, extraction: Extraction, solution: NetworkSolution, partial: str,
                 gather_cost: float, fold_batchnorm: bool = False, table=None):
        self.model, self.extraction, self.partial, self.gather_cost = model, extraction, partial, gather_cost
        self.table = table
        self.fold_batchnorm = fold_batchnorm
        self.folded: set[str] = set()         # BatchNorm nodes folded into the conv before them
        self.zeros: set[str] = set()          # nodes whose compact tensor is one all-zero channel
        self.inst = extraction.instance
        self.eff = extraction.effective(solution)
        self.modules = dict(model.named_modules())
        self.graph = fx.Graph()
        self.env: dict[str, fx.Node] = {}
        self.chan: dict[str, np.ndarray] = {}
        self.root: dict[str, object] = {}
        self.layers: list[dict] = []          # the report's per-layer entries
        self.module_names: list[str] = []     # per entry of layers, its module in the compact model
        self.candidates: list = []            # (entry of layers, build(mode)) of the partial layers "auto" chose for
        self.counter = 0
        self.weights_before = self.weights_after = self.macs_before = self.macs_after = 0

    def new_module(self, module: nn.Module, hint: str) -> str:
        self.counter += 1
        name = f"rc_{hint.replace('.', '_')}_{self.counter}"
        self.root[name] = module
        return name

    def tracked_inputs(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a.name in self.chan]

    def group_size(self, node: fx.Node) -> int:
        return self.extraction.channel_count(self.extraction.nodes[node.name])

    def full(self, node: fx.Node) -> fx.Node:
        """``node``'s compact value, a tracked tensor scattered to its group's full channel count."""
        if node.name not in self.chan:
            return self.env[node.name]
        info = self.extraction.nodes.get(node.name)
        if info is None or (info.group is None and not info.parts):
            return self.env[node.name]
        size = self.extraction.channel_count(info)
        idx = self.chan[node.name]
        if len(idx) == size:
            return self.env[node.name]
        if info.flat:
            raise InvalidInstanceError(f"node {node.name!r}: cannot restore the channels of a flattened tensor")
        return self.graph.call_module(self.new_module(ChannelScatter(idx, size, info.axis), "scatter"),
                                      (self.env[node.name],))

    def copy_node(self, node: fx.Node, arg: Callable[[fx.Node], fx.Node]) -> fx.Node:
        """``node`` as in the original graph (its module or attribute copied), arguments mapped by ``arg``."""
        if node.op == "call_module":
            self.root[node.target] = copy.deepcopy(self.modules[node.target])
        elif node.op == "get_attr":
            self.root[node.target] = copy.deepcopy(_get_attr(self.model, node.target))
        return self.graph.node_copy(node, arg)

    def foldable_batchnorm(self, node: fx.Node, mod: nn.Module) -> nn.Module | None:
        """The BatchNorm that alone reads ``node``'s output, when both run in eval mode on running
        statistics (then it is an affine map per channel, which folds into the conv); marked folded."""
        users = list(node.users)
        if not self.fold_batchnorm or mod.training or len(users) != 1 or users[0].op != "call_module" \
                or users[0].target not in self.extraction.batchnorms:
            return None
        bn = self.modules[users[0].target]
        if bn.training or bn.running_mean is None or bn.running_var is None:
            return None
        self.folded.add(users[0].name)
        return bn

    def add_layer(self, node: fx.Node, src: fx.Node, module: nn.Module, original: nn.Module, rows: np.ndarray,
                  kept_cols: int, mode: str) -> None:
        """Put the compact layer ``module`` at ``node`` on ``src``'s compact tensor; it carries ``rows``."""
        lm = self.extraction.layers[node.target]
        size = int(np.prod(lm.weight_shape))
        self.weights_before += size
        self.macs_before += size * lm.out_positions
        self.weights_after += len(rows) * kept_cols
        self.macs_after += len(rows) * kept_cols * lm.out_positions
        module.train(original.training)
        self.layers.append({"layer": node.target, "rows": len(rows), "cols": kept_cols, "mode": mode})
        self.module_names.append(self.new_module(module, node.target))
        self.env[node.name] = self.graph.call_module(self.module_names[-1], (self.env[src.name],))
        self.chan[node.name] = rows


def _get_attr(model: nn.Module, target: str):
    obj = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# --- which handler a node gets ----------------------------------------------------------------------------


def node_kind(b: _Builder, node: fx.Node) -> str:
    """The key of :data:`HANDLERS` for ``node``; the first rule that matches wins."""
    if node.op in ("placeholder", "output"):
        return node.op
    ext = b.extraction
    info = ext.nodes.get(node.name)
    srcs = b.tracked_inputs(node)
    if info is None or node.name in ext.excluded or not srcs:
        return "untracked"
    if node.name in ext.ops:
        return ext.ops[node.name]        # a coupling rule's kind: "tied-conv", "gate", "cat", "full", ...
    target = node.target if node.op == "call_module" else None
    if target in ext.layers:
        return ext.layers[target].kind   # "conv" or "linear"
    if target is not None and target in ext.batchnorms:
        return "batchnorm"
    if len(srcs) == 2 and node.op == "call_function":
        return "add"
    if info.flat and not ext.nodes[srcs[0].name].flat:
        return "flatten"
    return "channelwise"


# --- the handlers: each maps one node of the original graph into the compact one ---------------------------


def _placeholder(b: _Builder, node: fx.Node) -> None:
    b.env[node.name] = b.graph.placeholder(node.target)
    if node.name in b.extraction.nodes:
        b.chan[node.name] = np.arange(b.group_size(node))


def _output(b: _Builder, node: fx.Node) -> None:
    b.graph.output(fx.graph.map_arg(node.args[0], b.full))


def _untracked(b: _Builder, node: fx.Node) -> None:
    b.env[node.name] = b.copy_node(node, b.full)
    if node.name in b.extraction.nodes:
        b.chan[node.name] = np.arange(b.group_size(node))


def _kept(b: _Builder, node: fx.Node):
    """A pruned layer's source node, original module, kept rows, the channels its input carries and its
    kept columns on them (``carried channels x block``), and its kept rows' bias."""
    src = b.tracked_inputs(node)[0]
    lm = b.extraction.layers[node.target]
    mod = b.modules[node.target]
    s = b.eff[node.target]
    rows = np.flatnonzero(s.rows)
    in_chan = b.chan[src.name]
    c_in = lm.weight_shape[1]
    block = int(np.prod(lm.weight_shape[2:])) if lm.kind == "conv" else b.inst.layer(node.target).block
    colmask = s.cols.reshape(c_in // block if lm.kind == "linear" else c_in, block)[in_chan]
    bias = None if mod.bias is None else mod.bias.detach()[rows].clone()
    return src, mod, rows, in_chan, colmask, bias


def _linear(b: _Builder, node: fx.Node) -> None:
    src, mod, rows, in_chan, colmask, bias = _kept(b, node)
    block = colmask.shape[1]
    feat = np.flatnonzero(colmask.ravel())
    orig_cols = (in_chan[:, None] * block + np.arange(block)[None, :]).ravel()[feat]
    weight = layer_weight(mod, rows, orig_cols)
    newmod = RCLinear(weight, bias, None if len(feat) == colmask.size else feat)
    b.add_layer(node, src, newmod, mod, rows, len(feat), "linear")


def _conv(b: _Builder, node: fx.Node) -> None:
    src, mod, rows, in_chan, colmask, bias = _kept(b, node)
    touched = np.flatnonzero(colmask.any(axis=1))
    sub = colmask[touched]
    w4 = layer_weight(mod, rows, in_chan[touched])
    bn = b.foldable_batchnorm(node, mod)
    if bn is not None:
        w4, bias = batchnorm_folded(bn, rows, w4, bias)
    if not len(rows):
        _no_rows(b, node, src, mod)
        return
    if not len(touched):        # kept rows without a kept column: only their bias (or zeros)
        mode = "empty"
    elif sub.all():
        mode = "conv"
    elif b.partial == "auto" and b.table is not None:
        ms = b.table.form_times(node.target, len(rows), int(sub.sum()), len(touched))
        mode = "im2col" if ms.get("im2col", np.inf) < ms["conv"] else "conv-zeros"
    elif b.partial == "auto":
        fill = sub.sum() / sub.size
        mode = "im2col" if fill * (len(rows) + b.gather_cost) < len(rows) else "conv-zeros"
    else:
        mode = {"im2col": "im2col", "conv": "conv-zeros"}[b.partial]
    args = (mod, w4, bias, sub, touched, len(in_chan))
    if b.partial == "auto" and mode in PARTIAL_FORMS:
        b.candidates.append((len(b.layers), lambda m, args=args: CONV_FORMS[m](*args)))
    b.add_layer(node, src, CONV_FORMS[mode](*args), mod, rows, int(sub.sum()), mode)
    if bn is not None:
        b.layers[-1]["batchnorm"] = "folded"


def _no_rows(b: _Builder, node: fx.Node, src: fx.Node, mod: nn.Module) -> None:
    """A conv without kept rows: one all-zero channel (its group's first, dead in the masked model, where
    the mask zeroes its bias and the BatchNorm after it), since pooling and other ops refuse tensors of
    no channel. Adds drop it (:func:`_add`)."""
    w4 = layer_weight(mod)[:1, :0]
    b.add_layer(node, src, _empty_conv(mod, w4, None, None, None, None), mod, np.array([0]), 0, "empty")
    b.layers[-1]["rows"] = 0
    b.zeros.add(node.name)
    b.foldable_batchnorm(node, mod)   # a foldable BatchNorm of a dead channel: zero in, zero out


def _batchnorm(b: _Builder, node: fx.Node) -> None:
    src = b.tracked_inputs(node)[0]
    if src.name in b.zeros:
        b.zeros.add(node.name)
    if node.name in b.folded:
        b.env[node.name] = b.env[src.name]
        b.chan[node.name] = b.chan[src.name]
        return
    mod = b.modules[node.target]
    idx = torch.as_tensor(b.chan[src.name], dtype=torch.long)
    # a masked BatchNorm's class is parametrize's subclass: the compact one is of the original class
    bn = parametrize.type_before_parametrizations(mod)(len(idx), eps=mod.eps, momentum=mod.momentum,
                                                       affine=mod.affine, track_running_stats=mod.track_running_stats)
    like = next((t for t in (mod.running_mean, getattr(mod, "weight", None)) if t is not None), None)
    if like is not None:   # the original's dtype and device (a float64 model stays float64)
        bn = bn.to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        for pname in ("weight", "bias"):
            if getattr(mod, pname, None) is not None:
                getattr(bn, pname).copy_(getattr(mod, pname).detach()[idx])
        for bname in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(mod, bname, None) is not None:
                v = getattr(mod, bname)
                getattr(bn, bname).copy_(v if bname == "num_batches_tracked" else v[idx])
    bn.train(mod.training)
    b.env[node.name] = b.graph.call_module(b.new_module(bn, node.target), (b.env[src.name],))
    b.chan[node.name] = b.chan[src.name]


def _add(b: _Builder, node: fx.Node) -> None:
    a, c = node.args[0], node.args[1]
    if a.name in b.zeros or c.name in b.zeros:  # a branch with no live channel adds nothing
        live = c if a.name in b.zeros else a
        b.env[node.name] = b.env[live.name]
        b.chan[node.name] = b.chan[live.name]
        if live.name in b.zeros:
            b.zeros.add(node.name)
        return
    ia, ic = b.chan[a.name], b.chan[c.name]
    union = np.union1d(ia, ic)
    if len(ia) == len(union) and len(ic) == len(union):
        b.env[node.name] = b.graph.call_function(torch.add, (b.env[a.name], b.env[c.name]))
    else:
        pa = None if len(ia) == len(union) else np.searchsorted(union, ia)
        pc = None if len(ic) == len(union) else np.searchsorted(union, ic)
        axis = b.extraction.nodes[node.name].axis
        b.env[node.name] = b.graph.call_module(b.new_module(ChannelScatterAdd(pa, pc, len(union), axis), "add"),
                                               (b.env[a.name], b.env[c.name]))
    b.chan[node.name] = union


def _flatten(b: _Builder, node: fx.Node) -> None:
    src = b.tracked_inputs(node)[0]
    if src.name in b.zeros:
        b.zeros.add(node.name)
    b.env[node.name] = b.graph.call_function(torch.flatten, (b.env[src.name], 1))
    b.chan[node.name] = b.chan[src.name]


def _channelwise(b: _Builder, node: fx.Node) -> None:
    src = b.tracked_inputs(node)[0]
    if src.name in b.zeros:  # the extraction's supports already take these ops to keep zeros zero
        b.zeros.add(node.name)
    b.env[node.name] = b.copy_node(node, lambda n: b.env[n.name])
    b.chan[node.name] = b.chan[src.name]


HANDLERS: dict[str, Callable[[_Builder, fx.Node], None]] = {
    "placeholder": _placeholder,
    "output": _output,
    "untracked": _untracked,
    "conv": _conv,
    "linear": _linear,
    "batchnorm": _batchnorm,
    "add": _add,
    "flatten": _flatten,
    "channelwise": _channelwise,
    "gate": _untracked,
    "full": _untracked,
    "opaque": _untracked,
} | COUPLED_HANDLERS | CONCAT_HANDLERS | LAYOUT_HANDLERS


# --- the forms of a pruned conv -----------------------------------------------------------------------------
# Each takes the original conv, the kept rows' weights on the touched input channels ``w4``, their bias, the
# kept columns ``sub`` (touched channel x kernel position), the touched channels (indices into the carried
# ones) and how many channels the input carries.


def _geometry(mod: nn.Conv2d) -> dict:
    return dict(kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding, dilation=mod.dilation)


def _dense_conv(mod, w4, bias, sub, touched, n_in) -> RCConv2d:
    """A conv over the touched channels, zeros where a kernel position is pruned (none in mode "conv")."""
    mask = torch.from_numpy(sub).to(device=w4.device, dtype=w4.dtype).reshape(1, *sub.shape[:1], *w4.shape[2:])
    return RCConv2d((w4 * mask).contiguous(memory_format=_CL), bias, None if len(touched) == n_in else touched,
                    None, mode="conv", **_geometry(mod))


def _im2col_conv(mod, w4, bias, sub, touched, n_in) -> RCConv2d:
    """One GEMM on the kept im2col rows gathered from the input."""
    k = sub.shape[1]
    cols = np.flatnonzero(sub.ravel())   # channel-major, like the kept columns of the instance
    return RCConv2d(w4.reshape(w4.shape[0], -1)[:, cols].clone(), bias, None, touched[cols // k] * k + cols % k,
                    mode="im2col", **_geometry(mod))


def _empty_conv(mod, w4, bias, sub, touched, n_in) -> RCConv2d:
    """No kept column: the bias (or zeros) at every output position."""
    return RCConv2d(w4.new_zeros(w4.shape[0], 0), bias, None, None, mode="empty", **_geometry(mod))


PARTIAL_FORMS = {"im2col": _im2col_conv, "conv-zeros": _dense_conv}   # what "auto" chooses among
CONV_FORMS = {"conv": _dense_conv, "empty": _empty_conv} | PARTIAL_FORMS


def _choose_by_timing(out: fx.GraphModule, b: _Builder, example_inputs, repeats: int) -> None:
    """Give each candidate layer the fastest of :data:`PARTIAL_FORMS`, timed on its input in ``out`` run on
    ``example_inputs`` (median of ``repeats`` interleaved runs)."""
    inputs = {}
    wanted = {b.module_names[i] for i, _ in b.candidates}
    hooks = [out.get_submodule(name).register_forward_pre_hook(
        lambda m, args, name=name: inputs.__setitem__(name, args[0])) for name in wanted]
    try:
        with torch.inference_mode():
            out.eval()(*example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,))
    finally:
        for h in hooks:
            h.remove()
    for i, build in b.candidates:
        name = b.module_names[i]
        options = {b.layers[i]["mode"]: out.get_submodule(name)}
        for mode in PARTIAL_FORMS:
            if mode not in options:
                options[mode] = build(mode)
        ms = measure_latency(options, inputs[name], repeats=repeats, warmup=1)
        best = min(ms, key=ms.get)
        setattr(out, name, options[best])
        b.layers[i]["mode"] = best
        b.layers[i]["ms"] = {m: round(t, 3) for m, t in ms.items()}


def compact(model: nn.Module, solution: NetworkSolution, extraction: Extraction | None = None, *, partial: str = "auto",
            gather_cost: float = 80.0, example_inputs=None, repeats: int = 5,
            fold_batchnorm: bool = True, latency_table=None) -> tuple[fx.GraphModule, CompactReport]:
    """A new, physically smaller model computing what the masked model computes (up to floating-point
    rounding), holding only the kept weights of the pruned layers.

    Parameters
    ----------
    model : nn.Module
        The model (masked by :func:`rcprune.torch.apply`, baked, or unmasked: only kept entries are read).
    solution : NetworkSolution
    extraction : Extraction, optional
        Default: the latest :func:`rcprune.torch.extract` of this model object.
    partial : "auto", "im2col" or "conv"
        How a layer with partially kept channels (some kernel positions of a channel pruned) runs:
        ``"im2col"``, one GEMM on the kept im2col rows gathered from the input (exactly the kept
        multiply-adds); ``"conv"``, a conv over the touched channels with zeros where a position is
        pruned; ``"auto"``, per layer the one a cost model or, given ``example_inputs``, a measurement picks.
        Layers keeping whole channels are always a smaller dense conv.
    gather_cost : float
        ``"auto"``'s cost model: gathering one im2col entry costs as much as ``gather_cost``
        multiply-adds, so im2col is chosen when ``fill * (rows + gather_cost) < rows`` (``fill`` = kept
        columns / touched channels' columns). The right value depends on the machine; ``example_inputs``
        measures instead.
    example_inputs : tensor or tuple, optional
        With ``partial="auto"``: run the compact model on them and give each partial layer whichever of
        "im2col" and "conv" is faster on its real input (median of ``repeats`` interleaved runs, so the
        choice can differ between runs where the two are close; the report's ``layers`` list the times).
        Use the batch size the model will run at.
    latency_table : LatencyTable, optional
        With ``partial="auto"`` (and no ``example_inputs``): each partial layer gets the form the table
        (:func:`rcprune.torch.latency_table`) predicts fastest on its kept shape, the form the solver
        was charged for.
    fold_batchnorm : bool
        Fold a BatchNorm that alone reads a pruned conv's output into that conv when both are in eval
        mode (an inference model: one op less per layer, the same function up to rounding). A model in
        train mode, or a BatchNorm without running statistics, keeps its BatchNorm.

    Returns
    -------
    (GraphModule, CompactReport)
        The compact model (in the mode ``model`` was in; a copy, ``model`` is unchanged) and its sizes.

    Building takes one pass over the traced graph and one copy of the kept weights (plus, with
    ``example_inputs``, one forward and ``2 * repeats`` timed runs of each partial layer).
    """
    if example_inputs is not None and partial != "auto":
        raise InvalidInstanceError(f"example_inputs times the modes of partial='auto', got partial={partial!r}")
    if partial not in PARTIAL_MODES:
        raise InvalidInstanceError(f"partial must be 'auto', 'im2col' or 'conv', got {partial!r}")
    fold_batchnorm = check_flag(fold_batchnorm, "fold_batchnorm")
    if latency_table is not None and (partial != "auto" or example_inputs is not None):
        raise InvalidInstanceError("latency_table picks the forms of partial='auto' without example_inputs")
    b = _Builder(model, extraction_of(model, extraction), solution, partial, gather_cost, fold_batchnorm,
                 latency_table)
    for node in b.extraction.graph.nodes:
        HANDLERS[node_kind(b, node)](b, node)
    out = fx.GraphModule(b.root, b.graph, class_name="CompactModel")
    device = next((t.device for t in model.parameters()), None)
    if device is not None:   # the index buffers of the compacted forms are made on the CPU
        out.to(device)
    if example_inputs is not None and b.candidates:
        _choose_by_timing(out, b, example_inputs, repeats)
    out.train(model.training)
    params_before = sum(p.numel() for p in model.parameters())
    params_after = sum(p.numel() for p in out.parameters())
    report = CompactReport(params_before, params_after, b.weights_before, b.weights_after, b.macs_before,
                           b.macs_after, tuple(b.layers))
    return out, report
