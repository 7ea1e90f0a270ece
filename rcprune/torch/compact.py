"""Physical compaction: a new model whose pruned layers are smaller dense layers.

Every traced tensor carries only the channels that can be non-zero (its support): a conv computes its kept
rows from the kept input channels; a layer whose kept columns cover whole channels is a smaller
``Conv2d``; one with partially kept channels (input channel x kernel position) is one smaller GEMM on the
gathered im2col rows (or, ``partial="conv"``, a conv over the touched channels with zeros); a residual
add scatters each side into the union of their channels; the model's output is scattered back to full
size. The result is an ``torch.fx.GraphModule`` (a normal ``nn.Module``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from rcprune.network import NetworkSolution, check_network_solution
from rcprune.validation import InvalidInstanceError

from .extract import Extraction

__all__ = ["compact", "CompactReport", "RCConv2d", "RCLinear", "ChannelScatterAdd", "ChannelScatter"]


def _index(idx) -> torch.Tensor | None:
    return None if idx is None else torch.as_tensor(np.asarray(idx, dtype=np.int64))


class RCConv2d(nn.Module):
    """A conv on gathered input channels: ``mode="conv"`` (weight ``r x c x kh x kw``) or ``"im2col"``
    (weight ``r x n_kept_columns``; ``col_index`` picks the kept rows of the gathered input's im2col)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_index, col_index, *, mode: str,
                 kernel_size, stride, padding, dilation):
        super().__init__()
        self.mode = mode
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.register_buffer("in_index", _index(in_index))
        self.register_buffer("col_index", _index(col_index))
        self.register_buffer("pos_ptr", None)
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        if self.mode == "conv":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.mode == "shift":
            return self._shift(x)
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        if self.col_index is not None:
            cols = cols.index_select(1, self.col_index)
        out = torch.matmul(self.weight, cols)
        if self.bias is not None:
            out = out + self.bias[:, None]
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        return out.reshape(n, self.weight.shape[0], ho, wo)

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        """One 1x1 conv per kernel position on the channels kept there (``col_index`` sorted by
        position; ``pos_ptr`` delimits each position's block of ``weight`` columns)."""
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        h, w = x.shape[2], x.shape[3]
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        out = None
        ptr = self.pos_ptr.tolist()
        for p in range(kh * kw):
            a, b = ptr[p], ptr[p + 1]
            if a == b:
                continue
            dy, dx = (p // kw) * dh, (p % kw) * dw
            xs = xp[:, :, dy:dy + sh * (ho - 1) + 1:sh, dx:dx + sw * (wo - 1) + 1:sw].index_select(1, self.col_index[a:b])
            y = F.conv2d(xs, self.weight[:, a:b, None, None])
            out = y if out is None else out.add_(y)
        if out is None:
            out = x.new_zeros(x.shape[0], self.weight.shape[0], ho, wo)
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out

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
            x = x.index_select(1, self.in_index)
        return F.linear(x, self.weight, self.bias)


class ChannelScatterAdd(nn.Module):
    """``a + b`` where ``a`` and ``b`` hold different channel subsets: each is added at its positions
    (``None``: it holds all ``size`` channels, in order)."""

    def __init__(self, pos_a, pos_b, size: int):
        super().__init__()
        self.size = int(size)
        self.register_buffer("pos_a", _index(pos_a))
        self.register_buffer("pos_b", _index(pos_b))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.pos_a is None:
            return a if self.pos_b is None else a.index_add(1, self.pos_b, b)
        if self.pos_b is None:
            return b.index_add(1, self.pos_a, a)
        shape = (a.shape[0], self.size) + tuple(a.shape[2:])
        return a.new_zeros(shape).index_add(1, self.pos_a, a).index_add(1, self.pos_b, b)


class ChannelScatter(nn.Module):
    """Put the channels of ``x`` at positions ``pos`` of a zero tensor with ``size`` channels."""

    def __init__(self, pos, size: int):
        super().__init__()
        self.size = int(size)
        self.register_buffer("pos", _index(pos))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.size) + tuple(x.shape[2:])
        return x.new_zeros(shape).index_copy(1, self.pos, x)


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


def compact(model: nn.Module, solution: NetworkSolution, extraction: Extraction, *, partial: str = "auto",
            im2col_below: float = 0.5) -> tuple[fx.GraphModule, CompactReport]:
    """A new, physically smaller model computing what the masked model computes.

    Parameters
    ----------
    model : nn.Module
        The model (masked by :func:`rcprune.torch.apply`, baked, or unmasked: only kept entries are read).
    solution : NetworkSolution
    extraction : Extraction
    partial : "auto", "im2col" or "conv"
        How a layer with partially kept channels runs: a GEMM on the gathered im2col rows, a conv over
        the touched channels (zeros where a position is pruned), or ``"auto"``: im2col when the kept
        columns are below ``im2col_below`` of the touched channels' columns.

    Returns
    -------
    (GraphModule, CompactReport)
        The compact model (in the mode ``model`` was in; a copy, ``model`` is unchanged) and its sizes.
    """
    if partial not in ("auto", "im2col", "conv", "shift"):
        raise InvalidInstanceError(f"partial must be 'auto', 'im2col', 'conv' or 'shift', got {partial!r}")
    extraction.check_model(model)
    inst = extraction.instance
    check_network_solution(inst, solution)
    eff = solution.effective(inst)
    modules = dict(model.named_modules())
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    chan: dict[str, np.ndarray] = {}   # node -> channel indices (within its group) the compact tensor holds
    root: dict[str, object] = {}
    rows_info = []
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
                in_idx = None if len(touched) == len(in_chan) else touched
                whole = bool(sub.all())
                use_im2col = not whole and (partial == "im2col" or
                                            (partial == "auto" and sub.sum() < im2col_below * sub.size))
                if not len(touched):   # kept rows without a kept column: only their bias (or zeros)
                    mode = "empty"
                    newmod = RCConv2d(w.new_zeros(len(rows), 0), b, None, np.zeros(0, np.int64), mode="shift",
                                      kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding,
                                      dilation=mod.dilation)
                    newmod.pos_ptr = torch.zeros(int(np.prod(mod.kernel_size)) + 1, dtype=torch.long)
                elif not whole and partial == "shift":
                    k = sub.shape[1]
                    pos, ch = np.nonzero(sub.T)            # by kernel position, then channel
                    weight = w4.reshape(len(rows), -1)[:, ch * k + pos].clone()
                    mode = "shift"
                    newmod = RCConv2d(weight, b, in_idx, ch, mode=mode, kernel_size=mod.kernel_size,
                                      stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
                    newmod.pos_ptr = torch.as_tensor(np.searchsorted(pos, np.arange(k + 1)), dtype=torch.long)
                elif use_im2col:
                    cols = np.flatnonzero(sub.ravel())
                    weight = w4.reshape(len(rows), -1)[:, cols].clone()
                    mode = "im2col"
                    newmod = RCConv2d(weight, b, in_idx, cols, mode=mode, kernel_size=mod.kernel_size,
                                      stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
                else:
                    mask = torch.from_numpy(sub).to(w4.dtype).reshape(1, *sub.shape[:1], *w4.shape[2:])
                    weight = (w4 * mask).clone()
                    mode = "conv" if whole else "conv-zeros"
                    newmod = RCConv2d(weight, b, in_idx, None, mode="conv", kernel_size=mod.kernel_size,
                                      stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
            newmod.train(mod.training)
            rows_info.append({"layer": target, "rows": len(rows), "cols": kept_cols, "mode": mode})
            env[node.name] = graph.call_module(new_module(newmod, target), (env[src.name],))
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
    out.train(model.training)
    params_before = sum(p.numel() for n, p in model.named_parameters())
    params_after = sum(p.numel() for p in out.parameters())
    report = CompactReport(params_before, params_after, weights_before, weights_after, macs_before, macs_after,
                           tuple(rows_info))
    return out, report
