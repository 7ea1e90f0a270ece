"""Timing a pruned layer's compact forms on a grid of kept shapes: the measurements behind
:func:`rcprune.torch.latency_table.latency_table`.

A layer is probed once on the example inputs (its real input shape and the ops that run on its output
channels only); each form is then built at every grid point with the modules :func:`rcprune.torch.compact`
runs (:mod:`rcprune.torch.compact_forms`), channels-last, and timed on an input of the shape it would get:

- ``"conv"``: ``RCConv2d(mode="conv")``, ``r`` rows over ``t`` whole input channels (grid over ``(r, t)``);
- ``"im2col"``: ``RCConv2d(mode="im2col")``, ``r`` rows and ``c`` kept columns spread over the input
  channels (grid over ``(r, c)``; only for kernels larger than 1x1);
- ``"linear"``: ``RCLinear``, ``r`` rows over ``c`` input features (grid over ``(r, c)``).

The *epilogue* of a layer, BatchNorm and then an activation that consume its output and nothing else, runs
on the kept rows only, so it is timed with the form (it shrinks as rows are pruned; a constant remainder
would overestimate pruned models). The BatchNorm itself is not run: :func:`rcprune.torch.compact` folds it
into the conv in eval mode, so it costs the form a bias (timing it overestimated compacted ResNet-20s by
1.13-1.66x, ``docs/pareto-mnist.md``).

A conv whose output (through its folded BatchNorm) is the first term of a residual add also gets the form
``"conv-add"``: the conv, then the add of a tensor of its output's shape and the activation that alone reads
the sum, all on the kept rows. In the group space every producer of a residual group keeps the same
channels, so the add runs at the kept width; the table's group measure prices it with that conv instead of
in its constant ``fixed`` part (which overestimated small group models by up to 1.22x, docs/pareto-mnist.md).

Each timed run follows an untimed run of the same call: in a model a layer's input was just written by its
producer and is in cache; timed cold (after the other calls of the round) the small layers of a pruned
model read 10-30% slow.

>>> grid_knots(64, 8).tolist()
[0, 1, 5, 9, 16, 26, 41, 64]
>>> grid_knots(3, 8).tolist()
[0, 1, 2, 3]
"""
from __future__ import annotations

import copy
import operator
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.torch.compact_forms import _CL, RCConv2d, RCLinear

__all__ = ["grid_knots", "LayerProbe", "probe_layers", "layer_calls", "time_calls", "ResidualAdd"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh, nn.ELU)
_ACTIVATION_FUNCTIONS = {F.relu: nn.ReLU, torch.relu: nn.ReLU}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}


def grid_knots(full: int, count: int) -> np.ndarray:
    """``0``, ``1`` and up to ``count - 2`` more kept sizes up to ``full``, spaced between geometric and
    linear (the geometric mean of the two spacings: dense near 1, where small shapes change fastest in
    relative terms, without leaving the top coarse). Every size when ``full < count``. O(count)."""
    if full + 1 <= count:
        return np.arange(full + 1)
    geo = np.geomspace(1, full, count - 1)
    lin = np.linspace(1, full, count - 1)
    return np.unique(np.concatenate([[0, 1], np.round(np.sqrt(geo * lin))])).astype(np.int64)


@dataclass(frozen=True)
class LayerProbe:
    """What timing a layer needs: the module, its input shape at the example batch, ``in_channels``
    (``C_in``; features for a linear), ``block`` (columns per input channel) and its epilogue modules."""

    name: str
    kind: str
    module: nn.Module
    input_shape: tuple[int, ...]
    in_channels: int
    block: int
    epilogue: tuple[nn.Module, ...]
    residual: tuple[nn.Module, ...] | None = None   # the activation after the residual add it heads, if any
    output_shape: tuple[int, ...] = ()

    def signature(self) -> dict:
        """The facts a cached timing depends on."""
        m = self.module
        geo = {k: list(getattr(m, k)) for k in ("kernel_size", "stride", "padding", "dilation")
               if isinstance(getattr(m, k, None), tuple)}
        residual = None if self.residual is None else [type(e).__name__ for e in self.residual]
        return {"type": type(m).__name__, "weight": list(m.weight.shape), "bias": m.bias is not None,
                "groups": getattr(m, "groups", 1), "input": list(self.input_shape), "block": self.block,
                "epilogue": [type(e).__name__ for e in self.epilogue], "residual": residual} | geo


def _layer_node(graph: fx.Graph, layer: str) -> fx.Node | None:
    return next((n for n in graph.nodes if n.op == "call_module" and n.target == layer), None)


def _sole_user(node: fx.Node | None) -> fx.Node | None:
    """The one node that reads ``node``'s output, or None (no node, or several readers)."""
    return next(iter(node.users)) if node is not None and len(node.users) == 1 else None


def _activation_after(graph_node: fx.Node, modules: Mapping[str, nn.Module]) -> nn.Module | None:
    """The activation that alone reads ``graph_node``'s output, or None."""
    user = _sole_user(graph_node)
    if user is None:
        return None
    mod = modules.get(user.target) if user.op == "call_module" else None
    if isinstance(mod, _ACTIVATIONS):
        return copy.deepcopy(mod)
    if user.op == "call_function" and user.target in _ACTIVATION_FUNCTIONS:
        return _ACTIVATION_FUNCTIONS[user.target]()
    return None


def _epilogue(graph: fx.Graph, modules: Mapping[str, nn.Module], layer: str, batchnorms) -> tuple[nn.Module, ...]:
    """BatchNorm consuming only the layer's output, then an activation consuming only that BatchNorm's."""
    bn = _sole_user(_layer_node(graph, layer))
    if bn is None or bn.op != "call_module" or bn.target not in batchnorms:
        return ()
    mod = modules[bn.target]
    act = _activation_after(bn, modules)
    return (type(mod)(mod.num_features, eps=mod.eps, track_running_stats=mod.track_running_stats),) + \
        (() if act is None else (act,))


def _residual(graph: fx.Graph, modules: Mapping[str, nn.Module], layer: str, batchnorms) -> tuple | None:
    """When the conv ``layer``'s output, alone or through a BatchNorm that alone reads it, is the first term
    of a two-term add (``out += identity``): the activation that alone reads the sum (``()`` without one),
    else None. The first term owns the add, so a residual add is priced with one conv only."""
    node = _layer_node(graph, layer)
    user = _sole_user(node)
    if user is not None and user.op == "call_module" and user.target in batchnorms:
        node, user = user, _sole_user(user)
    if user is None:
        return None
    is_add = (user.op == "call_function" and user.target in _ADD_FUNCTIONS) or \
        (user.op == "call_method" and user.target in ("add", "add_"))
    if not is_add or len(user.args) != 2 or user.args[0] is not node or not isinstance(user.args[1], fx.Node) \
            or user.kwargs:
        return None
    act = _activation_after(user, modules)
    return () if act is None else (act,)


def probe_layers(model: nn.Module, extraction, inputs: tuple[torch.Tensor, ...], epilogue: bool) -> list[LayerProbe]:
    """One forward of ``model`` on ``inputs`` (hooks record each layer's input shape) -> a probe per layer,
    in the extraction's order. Raises what the model raises."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    out_shapes: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, args):   # returning nothing: a pre-hook's return value would replace the inputs
            shapes.setdefault(name, tuple(args[0].shape))
        return hook

    def record_out(name):
        def hook(module, args, out):
            out_shapes.setdefault(name, tuple(out.shape))
        return hook

    hooks = [modules[lm.module].register_forward_pre_hook(record(name)) for name, lm in extraction.layers.items()]
    hooks += [modules[lm.module].register_forward_hook(record_out(name)) for name, lm in extraction.layers.items()]
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    probes = []
    for name, lm in extraction.layers.items():
        info = extraction.instance.layer(name)
        ep = _epilogue(extraction.graph, modules, lm.module, extraction.batchnorms) if epilogue else ()
        residual = _residual(extraction.graph, modules, lm.module, extraction.batchnorms) \
            if epilogue and lm.kind == "conv" and len(out_shapes.get(name, ())) == 4 else None
        in_channels = info.cols // info.block if lm.kind == "linear" else lm.weight_shape[1]
        probes.append(LayerProbe(name, lm.kind, modules[lm.module], shapes[name], in_channels, info.block, ep,
                                 residual, out_shapes.get(name, ())))
    return probes


def _spread(count: int, full: int) -> np.ndarray:
    """``count`` distinct columns spread evenly over ``0 .. full - 1`` (channel-major im2col order)."""
    return np.unique(np.round(np.linspace(0, full - 1, count)).astype(np.int64))


def _with_epilogue(form: nn.Module, probe: LayerProbe, rows: int) -> nn.Module:
    if not probe.epilogue:
        return form
    ep = [(type(m)(rows, eps=m.eps, track_running_stats=m.track_running_stats) if _batchnorm(m) else m)
          for m in probe.epilogue if not _folded(probe, m)]
    return nn.Sequential(form, *ep) if ep else form


def _batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def _folded(probe: LayerProbe, m: nn.Module) -> bool:
    """A BatchNorm of the epilogue that ``compact`` folds into the conv before it (in eval mode, on running
    statistics); after a linear layer, or without running statistics, it runs and is timed."""
    return probe.kind == "conv" and _batchnorm(m) and m.track_running_stats


class ResidualAdd(nn.Module):
    """``act(layer(x) + other)``: a conv that heads a residual add, the add and its activation, on the kept
    rows (``other`` stands for the add's second term, of the conv's output shape)."""

    def __init__(self, layer: nn.Module, other: torch.Tensor, act: tuple[nn.Module, ...]):
        super().__init__()
        self.layer, self.act = layer, nn.Sequential(*act)
        self.register_buffer("other", other)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.layer(x) + self.other)


def _form(probe: LayerProbe, form: str, r: int, c: int, device, dtype) -> tuple[nn.Module, tuple[torch.Tensor]]:
    """The module of ``form`` at ``r`` rows and ``c`` kept columns (channels for ``"conv"`` and
    ``"conv-add"``) and its input."""
    if form == "conv-add":
        module, x = _form(probe, "conv", r, c, device, dtype)
        n, _, h, w = probe.output_shape
        other = torch.randn(n, r, h, w).contiguous(memory_format=_CL).to(device=device, dtype=dtype)
        return ResidualAdd(module, other, copy.deepcopy(probe.residual)).to(device=device, dtype=dtype).eval(), x
    m, shape = probe.module, probe.input_shape
    bias = None if m.bias is None and not any(_folded(probe, e) for e in probe.epilogue) else torch.zeros(r)
    if form == "linear":
        module, x = RCLinear(torch.randn(r, c), bias, None), torch.randn(shape[0], c)
    elif form == "conv":
        w = torch.randn(r, c, *m.kernel_size).contiguous(memory_format=_CL)
        module = RCConv2d(w, bias, None, None, mode="conv", kernel_size=m.kernel_size, stride=m.stride,
                          padding=m.padding, dilation=m.dilation)
        x = torch.randn(shape[0], c, *shape[2:]).contiguous(memory_format=_CL)
    else:
        module = RCConv2d(torch.randn(r, c), bias, None, _spread(c, probe.in_channels * probe.block),
                          mode="im2col", kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                          dilation=m.dilation)
        x = torch.randn(shape).contiguous(memory_format=_CL)
    module = _with_epilogue(module, probe, r).to(device=device, dtype=dtype).eval()
    return module, (x.to(device=device, dtype=dtype),)


def layer_forms(probe: LayerProbe) -> dict[str, int]:
    """The forms timed for ``probe`` and the full size of each one's column axis."""
    if probe.kind == "linear":
        return {"linear": probe.in_channels * probe.block}
    forms = {"conv": probe.in_channels}
    if probe.block > 1:
        forms["im2col"] = probe.in_channels * probe.block
    if probe.residual is not None:
        forms["conv-add"] = probe.in_channels
    return forms


def layer_calls(probe: LayerProbe, form: str, r: int, cols, device, dtype) -> dict:
    """``{(form, r, c): (module, inputs)}`` at ``r`` rows and each ``c`` of ``cols`` (all > 0)."""
    return {(form, r, int(c)): _form(probe, form, r, int(c), device, dtype) for c in cols}


def time_calls(calls: Mapping, *, repeats: int, warmup: int, device: torch.device) -> dict:
    """Median milliseconds of ``module(*inputs)`` per key of ``calls``, interleaved: ``warmup`` untimed runs
    of each, then ``repeats`` rounds of one timed run of every call in turn (load hits them alike), each
    right after an untimed run of the same call (its input and weights in cache, as in a model). On CUDA
    each timed run is bracketed by synchronizations (kernels run asynchronously).
    O(len(calls) * (2 * repeats + warmup)) forwards."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict = {k: [] for k in calls}
    with torch.inference_mode():
        for module, args in calls.values():
            for _ in range(warmup):
                module(*args)
        sync()
        for _ in range(repeats):
            for key, (module, args) in calls.items():
                module(*args)
                sync()
                t = time.perf_counter()
                module(*args)
                sync()
                times[key].append(time.perf_counter() - t)
    return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}
