"""Trace a PyTorch model into a :class:`rcprune.NetworkInstance` and keep the way back to its modules.

The model is traced once with ``torch.fx`` and run once on the example inputs (shapes). Conv2d and Linear
modules become layers (rows = output channels, columns = ``weight.view(C_out, -1)``); BatchNorm,
zero-preserving activations, pooling and dropout keep a tensor's channel group; residual adds merge
groups; flatten into a Linear makes each channel a block of ``H*W`` columns. The coupling rules of
:data:`RULES`, one module each, cover grouped and depthwise convs (:mod:`rcprune.torch.extract_tied`),
squeeze-excitation gates (:mod:`rcprune.torch.extract_gate`) and channel concatenations
(:mod:`rcprune.torch.extract_concat`; only the ops of :func:`reads_segments` may read one).

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))
>>> ext = extract(m, torch.zeros(1, 1, 4, 4), sparsity=0.5)
>>> ext.instance.layer_names, ext.instance.layer("3").block
(('0', '3'), 4)
"""
from __future__ import annotations

import copy
import dataclasses
import operator
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from rcprune.network.builder import NetworkBuilder
from rcprune.network.model import NetworkInstance
from rcprune.validation import InvalidInstanceError, check_name

from rcprune.torch.extract_attention import attention
from rcprune.torch.extract_concat import CAT_FUNCTIONS, concat
from rcprune.torch.extract_constant import constant
from rcprune.torch.extract_gate import gate, scale
from rcprune.torch.extract_layout import index, merge, permute, reduce
from rcprune.torch.extract_norm import layer_norm
from rcprune.torch.extract_shuffle import shuffle, split
from rcprune.torch.extract_tied import tied_conv
from rcprune.torch.rcmask import original_tensor
from rcprune.torch.traced import NodeInfo, TiedConv, Trace, target_name, tensor_shape

__all__ = ["extraction_of", "extract", "Extraction", "LayerMap", "NodeInfo"]

# modules / functions that keep every channel where it is and map 0 to 0; the elementwise ones map each value
# to one value of the same channel, so they are legal whatever dim holds the channels
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardswish, nn.ELU,
                        nn.Dropout, nn.Identity)
_PASS_MODULES = _ELEMENTWISE_MODULES + (nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                                        nn.AdaptiveMaxPool2d)
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.tanh, F.dropout}
try:  # torchvision's stochastic depth scales whole samples by 0 or 1 / (1 - p): zero stays zero
    from torchvision.ops import stochastic_depth as _stochastic_depth
    _ELEMENTWISE_FUNCTIONS.add(_stochastic_depth)
except ImportError:  # pragma: no cover - torchvision is optional
    pass
_PASS_FUNCTIONS = _ELEMENTWISE_FUNCTIONS | {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_PASS_METHODS = {"relu", "relu_", "contiguous", "tanh"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


@dataclass(frozen=True)
class LayerMap:
    """Where a layer of the instance lives in the model.

    ``module`` is the qualified module name (also the layer name), ``kind`` ``"conv"`` or ``"linear"``,
    ``out_positions`` the output positions per sample (``H_out * W_out``; 1 for a linear layer): a kept
    entry costs that many multiply-adds per sample.
    """

    name: str
    module: str
    kind: str
    weight_shape: tuple[int, ...]
    has_bias: bool
    out_positions: int


@dataclass
class Extraction:
    """What :func:`extract` found: the instance and the mapping back to the model."""

    instance: NetworkInstance
    layers: dict[str, LayerMap]
    nodes: dict[str, NodeInfo]
    graph: fx.Graph
    batchnorms: dict[str, str] = field(default_factory=dict)   # BN module -> node it runs at
    excluded: list[str] = field(default_factory=list)
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)           # node -> coupling kind (extract_* rules)
    tied: dict[str, TiedConv] = field(default_factory=dict)     # tied (grouped) conv module -> facts

    def tied_masks(self, solution) -> dict[str, dict[str, torch.Tensor]]:
        """Per tied conv, the masks of its ``weight`` (and ``bias``): entry ``(c, i)`` stays iff output
        channel ``c`` and its group's input channel ``i`` can carry values (:mod:`rcprune.torch.extract_tied`)."""
        out = {}
        for name, tc in self.tied.items():
            info = self.nodes[tc.node]
            keep = self.support_mask(info.support, info.group, solution)
            n = tc.weight_shape[1]
            inputs = keep.reshape(tc.groups, n)                      # per group, its input channels
            w = keep[:, None] & np.repeat(inputs, tc.weight_shape[0] // tc.groups, axis=0)
            w = np.broadcast_to(w[:, :, None, None], tc.weight_shape).copy()
            out[name] = {"weight": torch.from_numpy(w)}
            if tc.has_bias:
                out[name]["bias"] = torch.from_numpy(keep.copy())
        return out

    def check_model(self, model: nn.Module) -> None:
        """Raise unless ``model`` has this extraction's layers with the same weight shapes."""
        mods = dict(model.named_modules())
        for name, shape in self.param_shapes.items():
            m = mods.get(name)
            w = original_tensor(m) if m is not None else None
            if w is None or tuple(w.shape) != shape:
                got = None if w is None else tuple(w.shape)
                raise InvalidInstanceError(
                    f"the model does not match this extraction: module {name!r} should have weight shape "
                    f"{shape}, got {got} (was the solution made for another model?)")

    def effective(self, solution) -> dict:
        """The solution's effective per-layer masks (dead channels' columns cleared), after checking it
        belongs to this extraction's instance."""
        from rcprune.network.model import check_network_solution

        check_network_solution(self.instance, solution)
        return solution.effective(self.instance)

    def channel_mask(self, info: NodeInfo, solution) -> np.ndarray:
        """Channels of the tensor ``info`` that can be non-zero under ``solution`` (a concatenation's
        segments in order)."""
        return np.concatenate([self.support_mask(s.support, s.group, solution) for s in info.segments])

    def channel_count(self, info: NodeInfo) -> int:
        """The number of channels of the tensor ``info`` (of its group, or its segments' together)."""
        return sum(self.instance.group(s.group).size for s in info.segments)

    def support_mask(self, support: frozenset | None, group: str, solution) -> np.ndarray:
        """Channels of ``group`` that can be non-zero on a tensor with ``support`` under ``solution``."""
        size = self.instance.group(group).size
        if support is None:
            return np.ones(size, bool)
        m = np.zeros(size, bool)
        for layer in support:
            m |= solution[layer].rows
        return m


def _score_matrix(scores, name: str, weight: torch.Tensor) -> np.ndarray:
    """The layer's score matrix (rows = output channels), not copied: the instance copies every layer's
    scores once, into its flat float64 array (|w| is exact in the weight's own precision)."""
    if scores == "l1":
        w = weight.detach().cpu()
        w = w if w.dtype in (torch.float32, torch.float64) else w.to(torch.float64)
        s = w.abs().numpy().reshape(weight.shape[0], -1)
    elif scores == "l2":
        s = np.square(weight.detach().to(torch.float64).cpu().numpy().reshape(weight.shape[0], -1))
    elif callable(scores):
        s = np.asarray(scores(name, weight.detach()), dtype=np.float64)
        shape = (weight.shape[0], weight[0].numel())
        if s.size != weight.numel():
            raise InvalidInstanceError(f"scores callable returned shape {s.shape} for layer {name!r}; "
                                       f"expected {tuple(weight.shape)} or {shape}")
        s = s.reshape(shape)
    else:
        raise InvalidInstanceError(f"scores must be 'l1', 'l2' or a callable (name, weight) -> array, got {scores!r}")
    return s   # checked by the builder, copied by the instance


# the coupling rules, tried in this order before the built-in ops (one module each)
RULES = (attention, split, shuffle, concat, tied_conv, gate, constant, scale, layer_norm, permute, merge, index,
         reduce)


def _elementwise(node: fx.Node, mod: nn.Module | None) -> bool:
    if node.op == "call_module":
        return isinstance(mod, _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS or node.target in _ADD_FUNCTIONS
    return node.target in _PASS_METHODS


def reads_segments(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether ``node`` may read a concatenation: a concatenation, an ungrouped conv, a linear layer, a
    BatchNorm, a channel op or a flatten (each segment keeps its channels)."""
    if node.op == "call_module":
        return isinstance(mod, (nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.Flatten) + _PASS_MODULES) \
            or isinstance(mod, nn.Conv2d) and mod.groups == 1
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS or node.target in CAT_FUNCTIONS or node.target is torch.flatten
    return node.op == "call_method" and (node.target in _PASS_METHODS or node.target in _FLATTEN_METHODS)


def extract(model: nn.Module, example_inputs, *, scores: str | Callable = "l1", protect: Sequence[str] = (),
            sparsity: float | None = None, density: float | None = None, budget: int | None = None,
            weighting: Any = "none", min_density: float = 0.0, measure: Any = "weights",
            unsupported: str = "error", name: str | None = None) -> Extraction:
    """Trace ``model`` and build its RC pruning instance.

    Parameters
    ----------
    model : nn.Module
        Traceable by ``torch.fx.symbolic_trace``; its weights give the scores (not modified). A masked model
        is scored by its original weights, as if restored (bake it first to score the masked ones).
    example_inputs : Tensor or tuple of Tensors
        Run once (eval mode, no grad) for the shapes.
    scores : "l1", "l2" or callable
        ``callable(layer_name, weight) -> array`` of the weight's shape (or ``(C_out, C_in*k)``).
    protect : sequence of str
        Layer (module) names whose output channels must all stay (their rows are fixed). The channels
        that reach the model's output are always protected.
    sparsity, density, budget : optional
        The global budget (default: sparsity 0.9). ``weighting`` and ``min_density`` go to the instance;
        the default weighting ``"none"`` (raw scores summed over layers) fine-tuned best of none / total /
        mean on the digits ResNet, and ``"mean"`` worst (``docs/report-card.md``).
    measure : "weights", "macs" or Measure
        What the budget counts (:class:`rcprune.NetworkInstance`); a latency measure is made for the
        extraction (:func:`rcprune.torch.latency_table`), so derive it with ``instance.replace``.
    unsupported : "error" or "exclude"
        An op the adapter cannot follow on a pruned path (e.g. a grouped conv with a channel multiplier):
        raise an error naming the node, or (``"exclude"``) warn, keep its input channels whole and treat its
        output as a new input.

    Returns
    -------
    Extraction
    """
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if unsupported not in ("error", "exclude"):
        raise InvalidInstanceError(f"unsupported must be 'error' or 'exclude', got {unsupported!r}")
    if isinstance(protect, str) or not isinstance(protect, (list, tuple, set, frozenset)) \
            or not all(isinstance(p, str) for p in protect):
        raise InvalidInstanceError(f"protect must be a sequence of module names, got {protect!r}")
    if name is not None:
        check_name(name)
    if not (isinstance(scores, str) and scores in ("l1", "l2")) and not callable(scores):
        raise InvalidInstanceError(f"scores must be 'l1', 'l2' or a callable (name, weight) -> array, got {scores!r}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InvalidInstanceError("example_inputs must be a tensor or a tuple of tensors")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 -- tracing errors come in many types
        raise InvalidInstanceError(f"torch.fx could not trace the model: {type(exc).__name__}: {exc}") from None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as exc:  # noqa: BLE001
        raise InvalidInstanceError(f"the model cannot run on example_inputs of shape(s) "
                                   f"{[tuple(t.shape) for t in inputs]}: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)
    modules = dict(gm.named_modules())
    b = NetworkBuilder(name or type(model).__name__)
    values: dict[str, NodeInfo] = {}   # node -> info with the builder's (raw) group names
    layers: dict[str, LayerMap] = {}
    batchnorms: dict[str, str] = {}
    excluded: list[str] = []
    protected_raw: list[str] = []
    pending_protect = set(protect)
    unknown = [p for p in protect if p not in modules]
    if unknown:
        raise InvalidInstanceError(f"protect names unknown module(s) {unknown}")
    n_inputs = 0
    trace = Trace(b, values, modules, lambda node, why: refuse(node, why))

    def tracked(node_args) -> list[fx.Node]:
        out = []
        for a in node_args:
            if isinstance(a, fx.Node) and a.name in values:
                out.append(a)
            elif isinstance(a, (tuple, list)):
                out.extend(tracked(a))
        return out

    def refuse(node: fx.Node, why: str) -> None:
        msg = f"node {node.name!r} ({node.op} {target_name(node)}): {why}"
        if unsupported == "error":
            raise InvalidInstanceError(msg + "; pass unsupported='exclude' to keep its channels whole instead")
        warnings.warn(f"rcprune.torch.extract: {msg}; its input channels are kept whole", stacklevel=3)
        excluded.append(node.name)
        for a in tracked(list(node.args) + list(node.kwargs.values())):
            protected_raw.extend(s.group for s in values[a.name].segments)
        shape = tensor_shape(node)
        if shape is not None and len(shape) >= 2:
            values[node.name] = NodeInfo(b.input(f"{node.name}:excluded", int(shape[1])), None)

    for node in gm.graph.nodes:
        shape = tensor_shape(node)
        if node.op == "placeholder":
            if shape is None or len(shape) < 2:
                continue
            n_inputs += 1
            axis = 2 if len(shape) == 3 else 1   # (N, L, C) tokens; (N, C, H, W) images; (N, features)
            values[node.name] = NodeInfo(b.input(node.name, int(shape[axis])), None, axis=axis)
            continue
        if node.op == "output":
            for a in tracked(node.args):
                protected_raw.extend(s.group for s in values[a.name].segments)
            continue
        srcs = tracked(list(node.args) + list(node.kwargs.values()))
        if not srcs:
            continue
        if shape is None and (node.op == "call_method" and node.target in ("size", "dim") or
                              node.op == "call_function" and node.target is getattr):
            continue   # x.size(), x.shape, ...: no tensor flows on
        src = values[srcs[0].name]
        mod = modules.get(node.target) if node.op == "call_module" else None
        if any(values[s.name].parts for s in srcs) and not reads_segments(node, mod):
            refuse(node, "this op is not supported on a concatenation of channel groups")
            continue
        if any(rule(trace, node, mod, srcs) for rule in RULES):
            continue
        if shape is None:
            refuse(node, "output is not a single tensor")
            continue
        if src.axis != 1 and not (isinstance(mod, nn.Linear) or _elementwise(node, mod)):
            refuse(node, f"this op on a tensor whose channels are on dim {src.axis} (only elementwise ops, adds "
                         "and Linear layers are followed there)")
            continue
        if isinstance(mod, nn.Conv2d) or isinstance(mod, nn.Linear):
            lname = node.target
            if lname in layers:
                refuse(node, "the module is called more than once (shared weights)")
                continue
            if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
                refuse(node, f"padding_mode {mod.padding_mode!r}")
                continue
            if src.flat and isinstance(mod, nn.Conv2d):
                refuse(node, "conv on a flattened tensor")
                continue
            in_shape = tensor_shape(srcs[0])
            if isinstance(mod, nn.Linear) and (in_shape is None or src.axis != len(in_shape) - 1 or src.flat
                                               and len(in_shape) != 2):
                refuse(node, f"linear layer on a {len(in_shape or ())}-d tensor whose channels are on dim "
                             f"{src.axis} (only on the last dim: (N, features) or (N, ..., C))")
                continue
            s = _score_matrix(scores, lname, original_tensor(mod))
            reads = [seg.group for seg in src.segments]   # a concatenation: each segment's group in turn
            if isinstance(mod, nn.Conv2d):
                positions, kind = int(np.prod(shape[2:])), "conv"
                out = b.layer(lname, s, reads, kernel=tuple(mod.kernel_size), positions=positions)
            else:    # on (N, ..., C): one product per position of the dims between
                positions, kind = int(np.prod(shape[1:-1])), "linear"
                spatial = src.spatial if src.flat else (1,)
                out = b.layer(lname, s, reads, spatial=spatial, positions=positions)
            if lname in pending_protect:
                protected_raw.append(out)
            layers[lname] = LayerMap(lname, lname, kind, tuple(mod.weight.shape), mod.bias is not None, positions)
            values[node.name] = NodeInfo(out, frozenset([lname]), axis=len(shape) - 1 if kind == "linear" else 1)
        elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if src.flat and src.spatial != (1,):
                refuse(node, "batch norm on a flattened tensor with spatial positions")
                continue
            if node.target in batchnorms:
                refuse(node, "the batch norm module is called more than once")
                continue
            batchnorms[node.target] = node.name
            values[node.name] = src
        elif isinstance(mod, _PASS_MODULES) or (node.op == "call_function" and node.target in _PASS_FUNCTIONS) \
                or (node.op == "call_method" and node.target in _PASS_METHODS):
            if src.flat and not isinstance(mod, (nn.Dropout, nn.Identity)) and node.target not in (F.dropout, "contiguous") \
                    and src.spatial != (1,):
                refuse(node, "channel op on a flattened tensor")
                continue
            values[node.name] = src
        elif node.op == "call_function" and node.target in _ADD_FUNCTIONS:
            tensors = [a for a in node.args if isinstance(a, fx.Node)]
            if len(srcs) != 2 or len(tensors) != 2 or node.kwargs:
                refuse(node, "an add must have two traced tensors (adding a constant makes zeros non-zero)")
                continue
            a, c = values[srcs[0].name], values[srcs[1].name]
            if a.flat != c.flat or a.spatial != c.spatial or a.axis != c.axis:
                refuse(node, "adds tensors whose channels lie differently (flattened or not, or on other dims)")
                continue
            try:
                g = b.add(a.group, c.group)
            except InvalidInstanceError as exc:
                raise InvalidInstanceError(f"node {node.name!r}: {exc}") from None
            sup = None if a.support is None or c.support is None else a.support | c.support
            values[node.name] = NodeInfo(g, sup, a.spatial, a.flat, axis=a.axis)
        elif (isinstance(mod, nn.Flatten) or (node.op == "call_function" and node.target is torch.flatten)
              or (node.op == "call_method" and node.target in _FLATTEN_METHODS)):
            in_shape = tensor_shape(srcs[0])
            if src.flat or in_shape is None or len(shape) != 2 or shape[0] != in_shape[0] or len(in_shape) < 2:
                refuse(node, f"reshape from {in_shape} to {shape} is not a flatten of (N, C, ...) to (N, C*...)")
                continue
            values[node.name] = dataclasses.replace(src, spatial=tuple(int(v) for v in in_shape[2:]) or (1,), flat=True)
        else:
            refuse(node, "this op is not supported on a pruned path")
    missing = pending_protect - set(layers)
    if missing:
        raise InvalidInstanceError(f"protect names module(s) that are not pruned layers: {sorted(missing)}")
    if not layers:
        raise InvalidInstanceError("the model has no Conv2d or Linear layer the adapter can prune")
    for g in protected_raw:
        b.protect(g)
    given = {k: v for k, v in (("budget", budget), ("density", density), ("sparsity", sparsity)) if v is not None}
    if not given:
        given = {"sparsity": 0.9}
    instance = b.build(weighting=weighting, min_density=min_density, measure=measure,
                       metadata={"source": "rcprune.torch.extract", "model": type(model).__name__}, **given)
    root = {}
    for gi in instance.groups:
        for m in (gi.name, *gi.members):
            root[m] = gi.name
    def rooted(v: NodeInfo) -> NodeInfo:
        return dataclasses.replace(v, group=root[v.group] if v.group else None,
                                   parts=tuple(rooted(p) for p in v.parts))

    nodes = {k: rooted(v) for k, v in values.items()}
    params = {lm.module: lm.weight_shape for lm in layers.values()}
    params |= {m: tc.weight_shape for m, tc in trace.tied.items()}   # the masks fit tied convs too
    ext = Extraction(instance=instance, layers=layers, nodes=nodes, graph=copy.deepcopy(gm.graph),
                     batchnorms=batchnorms, excluded=excluded, param_shapes=params, ops=trace.ops, tied=trace.tied)
    _EXTRACTIONS[model] = ext
    return ext


_EXTRACTIONS: "weakref.WeakKeyDictionary[nn.Module, Extraction]" = weakref.WeakKeyDictionary()


def extraction_of(model: nn.Module, extraction: "Extraction | None" = None) -> "Extraction":
    """``extraction`` if given, else the latest :func:`extract` of this very model object (so
    ``apply(model, solution)`` needs no third argument; a copy of the model needs it passed explicitly),
    checked against ``model`` (:meth:`Extraction.check_model`)."""
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if extraction is not None and not isinstance(extraction, Extraction):
        raise InvalidInstanceError(f"extraction must be a rcprune.torch.Extraction, got {type(extraction).__name__}")
    found = extraction if extraction is not None else _EXTRACTIONS.get(model)
    if found is None:
        raise InvalidInstanceError(
            f"no extraction is known for this {type(model).__name__}: call rcprune.torch.extract(model, "
            "example_inputs) on this model first, or pass extraction=... (a copied model needs it passed)")
    found.check_model(model)
    return found
