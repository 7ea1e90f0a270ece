"""Physical compaction: a new model whose pruned layers are smaller dense layers.

Every traced tensor carries only the channels that can be non-zero (its support): a conv computes its kept
rows from the kept input channels; a layer whose kept columns cover whole channels is a smaller
``Conv2d``; one with partially kept channels (input channel x kernel position) is one smaller GEMM on the
kept im2col rows gathered from its input, or a conv over the touched channels with zeros, whichever is
faster (``partial="auto"``: a cost model, or timed on example inputs); a residual add scatters each side
into the union of their channels; the model's output is scattered back to full size. Convolutions run
channels-last (oneDNN's fast layout on CPU). The result is a ``torch.fx.GraphModule`` (a normal
``nn.Module``; ``torch.export`` works on it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.network.model import NetworkSolution
from rcprune.validation import InvalidInstanceError

from rcprune.torch.extract import Extraction, extraction_of

__all__ = ["compact", "CompactReport", "RCConv2d", "RCLinear", "ChannelScatterAdd", "ChannelScatter"]


def _index(idx) -> torch.Tensor | None:
    return None if idx is None else torch.as_tensor(np.asarray(idx, dtype=np.int64))


_CL = torch.channels_last


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class RCConv2d(nn.Module):
    """A pruned conv. Modes:

    ``"conv"``
        ``F.conv2d`` on the gathered input channels ``in_index`` (weight ``r x c x kh x kw``; zeros where a
        kernel position is pruned).
    ``"im2col"``
        The kept im2col rows, gathered straight from the (padded, channels-last) input by one flat
        ``index_select`` (``col_index[j] = channel * kh * kw + position`` within the input's channels), then
        one GEMM, run as a 1x1 conv (weight ``r x n_kept_columns``): the multiply-adds are exactly the kept
        entries'. The gather index depends on the input's spatial size and is cached per size.
    ``"empty"``
        No kept column: the bias (or zeros) at every output position.

    Inputs are made channels-last (a no-op when they already are): oneDNN's convolutions are fastest in
    that layout on CPU and the im2col gather needs it; outputs are channels-last too.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_index, col_index, *, mode: str,
                 kernel_size, stride, padding, dilation):
        super().__init__()
        self.mode = mode
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.register_buffer("in_index", _index(in_index))
        self.register_buffer("col_index", _index(col_index))
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self._gather_cache: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "im2col":
            return self._im2col(x.contiguous(memory_format=_CL))
        x = x.contiguous(memory_format=_CL) if self.in_index is None else select_channels(x, self.in_index)
        if self.mode == "conv":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        kh, kw = self.kernel_size   # "empty"
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        ho, wo = _out_size(x.shape[2], kh, sh, ph, dh), _out_size(x.shape[3], kw, sw, pw, dw)
        out = x.new_zeros(x.shape[0], ho, wo, self.weight.shape[0])
        return _nchw(out if self.bias is None else out + self.bias)

    def _gather_index(self, c: int, h: int, w: int, ho: int, wo: int) -> torch.Tensor:
        """Flat positions in the padded ``(h_p, w_p, c)`` input of the kept im2col rows, output position
        major: entry ``(l, j)`` is where kept column ``j`` reads for output position ``l``."""
        kh, kw = self.kernel_size
        (sh, sw), (_, pw), (dh, dw) = self.stride, self.padding, self.dilation
        wp = w + 2 * pw
        ch = torch.div(self.col_index, kh * kw, rounding_mode="floor")
        pos = self.col_index - ch * (kh * kw)
        dy = torch.div(pos, kw, rounding_mode="floor")
        base = ((dy * dh) * wp + (pos - dy * kw) * dw) * c + ch
        oy = torch.arange(ho, device=base.device) * (sh * wp * c)
        ox = torch.arange(wo, device=base.device) * (sw * c)
        return ((oy[:, None] + ox[None, :]).reshape(-1, 1) + base[None, :]).reshape(-1)

    def _im2col(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
        key = (c, h, w, x.device)
        idx = self._gather_cache.get(key)
        if idx is None:
            idx = self._gather_index(c, h, w, ho, wo)
            if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
                self._gather_cache[key] = idx
        xp = x.permute(0, 2, 3, 1)
        if ph or pw:
            xp = F.pad(xp, (0, 0, pw, pw, ph, ph))
        cols = xp.reshape(n, -1).index_select(1, idx)
        k = self.weight.shape[1]
        cols = cols.view(n, ho, wo, k).permute(0, 3, 1, 2)
        return F.conv2d(cols, self.weight[:, :, None, None], self.bias)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, weight={tuple(self.weight.shape)}, kernel_size={self.kernel_size}, stride={self.stride}"


class RCLinear(nn.Module):
    """A linear layer on the kept features ``in_index`` of its input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_index):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.register_buffer("in_index", _index(in_index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_index is not None:
            x = select_channels(x, self.in_index)
        return F.linear(x, self.weight, self.bias)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=_CL).permute(0, 2, 3, 1)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _zeros(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Channels-last zeros shaped like the 4-d ``x`` with ``channels`` channels, as an ``(n, h, w, c)`` view."""
    return x.new_zeros((x.shape[0], x.shape[2], x.shape[3], channels))


def select_channels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(1, index)``; a 4-d result is channels-last (gathered as rows of the ``(n*h*w, c)``
    view, several times faster than ``index_select`` on dim 1 of a channels-last tensor)."""
    if x.dim() != 4:
        return x.index_select(1, index)
    n, c, h, w = x.shape
    return _nchw(_nhwc(x).reshape(-1, c).index_select(1, index).view(n, h, w, -1))


class ChannelScatterAdd(nn.Module):
    """``a + b`` where ``a`` and ``b`` hold different channel subsets: each is added at its positions
    (``None``: it holds all ``size`` channels, in order)."""

    def __init__(self, pos_a, pos_b, size: int):
        super().__init__()
        self.size = int(size)
        self.register_buffer("pos_a", _index(pos_a))
        self.register_buffer("pos_b", _index(pos_b))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 4:
            if self.pos_a is None:
                return a if self.pos_b is None else a.index_add(1, self.pos_b, b)
            if self.pos_b is None:
                return b.index_add(1, self.pos_a, a)
            return a.new_zeros((a.shape[0], self.size) + tuple(a.shape[2:])).index_add(
                1, self.pos_a, a).index_add(1, self.pos_b, b)
        # on the channels-last (n, h, w, c) views: index_add along the last dim is the fast one
        if self.pos_a is None:
            return a if self.pos_b is None else _nchw(_nhwc(a).index_add(3, self.pos_b, _nhwc(b)))
        if self.pos_b is None:
            return _nchw(_nhwc(b).index_add(3, self.pos_a, _nhwc(a)))
        return _nchw(_zeros(a, self.size).index_add_(3, self.pos_a, _nhwc(a)).index_add_(3, self.pos_b, _nhwc(b)))


class ChannelScatter(nn.Module):
    """Put the channels of ``x`` at positions ``pos`` of a zero tensor with ``size`` channels."""

    def __init__(self, pos, size: int):
        super().__init__()
        self.size = int(size)
        self.register_buffer("pos", _index(pos))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return x.new_zeros((x.shape[0], self.size) + tuple(x.shape[2:])).index_copy(1, self.pos, x)
        return _nchw(_zeros(x, self.size).index_copy_(3, self.pos, _nhwc(x)))


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


def _get_attr(model: nn.Module, target: str):
    obj = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _partial_conv(mode: str, mod: nn.Conv2d, w4: torch.Tensor, b: torch.Tensor | None, sub: np.ndarray,
                  touched: np.ndarray, n_in: int) -> RCConv2d:
    """The compact conv of one layer in ``mode`` ("conv-zeros" or "im2col"): ``w4`` holds
    the kept rows' weights on the ``touched`` input channels (of ``n_in``), ``sub`` their kept columns
    (touched channel x kernel position)."""
    geometry = dict(kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
    r, k = w4.shape[0], sub.shape[1]
    in_idx = None if len(touched) == n_in else touched
    if mode == "im2col":
        cols = np.flatnonzero(sub.ravel())   # channel-major, like the kept columns of the instance
        return RCConv2d(w4.reshape(r, -1)[:, cols].clone(), b, None, touched[cols // k] * k + cols % k,
                        mode="im2col", **geometry)
    mask = torch.from_numpy(sub).to(w4.dtype).reshape(1, *sub.shape[:1], *w4.shape[2:])
    return RCConv2d((w4 * mask).contiguous(memory_format=_CL), b, in_idx, None, mode="conv", **geometry)


def _choose_by_timing(out: fx.GraphModule, example_inputs, candidates, rows_info, module_names,
                      repeats: int) -> None:
    """Give each candidate layer the faster of "im2col" and "conv-zeros", timed on its input in ``out``
    run on ``example_inputs`` (median of ``repeats`` interleaved runs)."""
    from rcprune.torch.latency import measure_latency

    inputs = {}
    wanted = {module_names[i]: i for i, _ in candidates}
    hooks = [out.get_submodule(name).register_forward_pre_hook(
        lambda m, args, name=name: inputs.__setitem__(name, args[0])) for name in wanted]
    try:
        with torch.inference_mode():
            out.eval()(*example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,))
    finally:
        for h in hooks:
            h.remove()
    for i, build in candidates:
        name = module_names[i]
        current = out.get_submodule(name)
        options = {rows_info[i]["mode"]: current}
        for mode in ("im2col", "conv-zeros"):
            if mode not in options:
                options[mode] = build(mode)
        ms = measure_latency(options, inputs[name], repeats=repeats, warmup=1)
        best = min(ms, key=ms.get)
        setattr(out, name, options[best])
        rows_info[i]["mode"] = best
        rows_info[i]["ms"] = {m: round(t, 3) for m, t in ms.items()}


def compact(model: nn.Module, solution: NetworkSolution, extraction: Extraction | None = None, *, partial: str = "auto",
            gather_cost: float = 80.0, example_inputs=None, repeats: int = 5) -> tuple[fx.GraphModule, CompactReport]:
    """A new, physically smaller model computing what the masked model computes.

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
        columns / touched channels' columns). 80 fits ResNet-18 on a 2-core AVX-512 CPU (oneDNN).
    example_inputs : tensor or tuple, optional
        With ``partial="auto"``: run the compact model on them and give each partial layer whichever of
        "im2col" and "conv" is faster on its real input (median of ``repeats`` interleaved runs, so the
        choice can differ between runs where the two are close; the report's ``layers`` list the times).
        Use the batch size the model will run at.

    Returns
    -------
    (GraphModule, CompactReport)
        The compact model (in the mode ``model`` was in; a copy, ``model`` is unchanged) and its sizes.
    """
    if example_inputs is not None and partial != "auto":
        raise InvalidInstanceError(f"example_inputs times the modes of partial='auto', got partial={partial!r}")
    if partial not in ("auto", "im2col", "conv"):
        raise InvalidInstanceError(f"partial must be 'auto', 'im2col' or 'conv', got {partial!r}")
    extraction = extraction_of(model, extraction)
    inst = extraction.instance
    eff = extraction.effective(solution)
    modules = dict(model.named_modules())
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    chan: dict[str, np.ndarray] = {}   # node -> channel indices (within its group) the compact tensor holds
    root: dict[str, object] = {}
    rows_info = []
    module_names = []   # per entry of rows_info, its module in the compact model
    candidates = []     # (entry of rows_info, build(mode)) of the partial layers "auto" chose a mode for
    counter = [0]

    def new_module(module: nn.Module, hint: str) -> str:
        counter[0] += 1
        name = f"rc_{hint.replace('.', '_')}_{counter[0]}"
        root[name] = module
        return name

    def full(node: fx.Node) -> fx.Node:
        """``node``'s compact tensor scattered to its group's full channel count."""
        info = extraction.nodes.get(node.name)
        if info is None or info.group is None:
            return env[node.name]
        size = inst.group(info.group).size
        idx = chan[node.name]
        if len(idx) == size:
            return env[node.name]
        if info.flat:
            raise InvalidInstanceError(f"node {node.name!r}: cannot restore the channels of a flattened tensor")
        return graph.call_module(new_module(ChannelScatter(idx, size), "scatter"), (env[node.name],))

    def arg_map(n: fx.Node) -> fx.Node:
        return env[n.name]

    def copy_module_target(node: fx.Node) -> None:
        if node.op == "call_module":
            root[node.target] = copy.deepcopy(modules[node.target])
        elif node.op == "get_attr":
            root[node.target] = copy.deepcopy(_get_attr(model, node.target))

    macs_before = macs_after = weights_before = weights_after = 0
    for node in extraction.graph.nodes:
        info = extraction.nodes.get(node.name)
        if node.op == "placeholder":
            env[node.name] = graph.placeholder(node.target)
            if info is not None:
                chan[node.name] = np.arange(inst.group(info.group).size)
            continue
        if node.op == "output":
            def out_map(n: fx.Node) -> fx.Node:
                return full(n) if n.name in chan else env[n.name]
            graph.output(fx.graph.map_arg(node.args[0], out_map))
            continue
        srcs = [a for a in node.all_input_nodes if a.name in chan]
        if info is None or node.name in extraction.excluded or not srcs:
            # untracked, or excluded: run as in the original on full-size tensors
            copy_module_target(node)
            env[node.name] = graph.node_copy(node, lambda n: full(n) if n.name in chan else env[n.name])
            if info is not None:
                chan[node.name] = np.arange(inst.group(info.group).size)
            continue
        src = srcs[0]
        target = node.target if node.op == "call_module" else None
        if target in extraction.layers:
            lm = extraction.layers[target]
            mod = modules[target]
            s = eff[target]
            rows = np.flatnonzero(s.rows)
            in_chan = chan[src.name]
            c_in = lm.weight_shape[1]
            block = int(np.prod(lm.weight_shape[2:])) if lm.kind == "conv" else inst.layer(target).block
            colmask = s.cols.reshape(c_in // block if lm.kind == "linear" else c_in, block)[in_chan]
            w = mod.weight.detach()
            b = None if mod.bias is None else mod.bias.detach()[rows].clone()
            weights_before += int(np.prod(lm.weight_shape))
            macs_before += int(np.prod(lm.weight_shape)) * lm.out_positions
            kept_cols = int(colmask.sum())
            weights_after += len(rows) * kept_cols
            macs_after += len(rows) * kept_cols * lm.out_positions
            if lm.kind == "linear":
                feat = np.flatnonzero(colmask.ravel())
                orig_cols = (in_chan[:, None] * block + np.arange(block)[None, :]).ravel()[feat]
                weight = w[rows][:, orig_cols].clone()
                idx = None if len(feat) == colmask.size else feat
                newmod = RCLinear(weight, b, idx)
                mode = "linear"
            else:
                touched = np.flatnonzero(colmask.any(axis=1))
                w4 = w[rows][:, in_chan[touched]]
                sub = colmask[touched]
                if not len(touched):   # kept rows without a kept column: only their bias (or zeros)
                    mode = "empty"
                    newmod = RCConv2d(w.new_zeros(len(rows), 0), b, None, None, mode="empty",
                                      kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding,
                                      dilation=mod.dilation)
                else:
                    if sub.all():
                        mode = "conv"
                    elif partial == "auto":
                        fill = sub.sum() / sub.size
                        mode = "im2col" if fill * (len(rows) + gather_cost) < len(rows) else "conv-zeros"
                    else:
                        mode = "conv-zeros" if partial == "conv" else partial
                    newmod = _partial_conv(mode, mod, w4, b, sub, touched, len(in_chan))
                    if partial == "auto" and mode != "conv":
                        candidates.append((len(rows_info), lambda m, a=(mod, w4, b, sub, touched, len(in_chan)):
                                           _partial_conv(m, *a)))
            newmod.train(mod.training)
            rows_info.append({"layer": target, "rows": len(rows), "cols": kept_cols, "mode": mode})
            module_names.append(new_module(newmod, target))
            env[node.name] = graph.call_module(module_names[-1], (env[src.name],))
            chan[node.name] = rows
        elif target is not None and target in extraction.batchnorms:
            mod = modules[target]
            idx = torch.as_tensor(chan[src.name], dtype=torch.long)
            bn = type(mod)(len(idx), eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                           track_running_stats=mod.track_running_stats)
            with torch.no_grad():
                for pname in ("weight", "bias"):
                    if getattr(mod, pname, None) is not None:
                        getattr(bn, pname).copy_(getattr(mod, pname).detach()[idx])
                for bname in ("running_mean", "running_var", "num_batches_tracked"):
                    if getattr(mod, bname, None) is not None:
                        v = getattr(mod, bname)
                        getattr(bn, bname).copy_(v if bname == "num_batches_tracked" else v[idx])
            bn.train(mod.training)
            env[node.name] = graph.call_module(new_module(bn, target), (env[src.name],))
            chan[node.name] = chan[src.name]
        elif len(srcs) == 2 and node.op == "call_function":   # a residual add
            a, c = node.args[0], node.args[1]
            ia, ic = chan[a.name], chan[c.name]
            union = np.union1d(ia, ic)
            if len(ia) == len(union) and len(ic) == len(union):
                env[node.name] = graph.call_function(torch.add, (env[a.name], env[c.name]))
            else:
                pa = None if len(ia) == len(union) else np.searchsorted(union, ia)
                pc = None if len(ic) == len(union) else np.searchsorted(union, ic)
                env[node.name] = graph.call_module(new_module(ChannelScatterAdd(pa, pc, len(union)), "add"),
                                                   (env[a.name], env[c.name]))
            chan[node.name] = union
        elif info.flat and not extraction.nodes[src.name].flat:   # flatten
            env[node.name] = graph.call_function(torch.flatten, (env[src.name], 1))
            chan[node.name] = chan[src.name]
        else:   # channel-wise op
            copy_module_target(node)
            env[node.name] = graph.node_copy(node, arg_map)
            chan[node.name] = chan[src.name]
    out = fx.GraphModule(root, graph, class_name="CompactModel")
    if example_inputs is not None and candidates:
        _choose_by_timing(out, example_inputs, candidates, rows_info, module_names, repeats)
    out.train(model.training)
    params_before = sum(p.numel() for n, p in model.named_parameters())
    params_after = sum(p.numel() for p in out.parameters())
    report = CompactReport(params_before, params_after, weights_before, weights_after, macs_before, macs_after,
                           tuple(rows_info))
    return out, report
