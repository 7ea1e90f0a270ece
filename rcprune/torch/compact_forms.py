"""The modules a compacted model is made of: pruned conv and linear layers on the kept channels, and the
scatters that put a tensor holding a subset of its group's channels back in place.

4-d tensors are kept channels-last (``torch.channels_last``): the layout oneDNN's CPU convolutions
prefer, and the one in which a channel gather or scatter works on contiguous rows of the ``(n*h*w, c)``
view. Index tensors are buffers (they move with ``.to()`` and are saved in ``state_dict``); shapes and
geometry are python ints, so ``torch.export`` traces every form.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RCConv2d", "RCLinear", "GroupedConv", "ChannelSelect", "ChannelScatterAdd", "ChannelScatter",
           "select_channels", "batchnorm_folded"]

_CL = torch.channels_last


def _index(idx) -> torch.Tensor | None:
    return None if idx is None else torch.as_tensor(np.asarray(idx, dtype=np.int64))


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=_CL).permute(0, 2, 3, 1)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _zeros(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Channels-last zeros shaped like the 4-d ``x`` with ``channels`` channels, as an ``(n, h, w, c)`` view."""
    return x.new_zeros((x.shape[0], x.shape[2], x.shape[3], channels))


def select_channels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(1, index)``; a 4-d result is channels-last, gathered along the contiguous last
    dimension of the ``(n*h*w, c)`` view (one pass over ``x``)."""
    if x.dim() != 4:
        return x.index_select(1, index)
    n, c, h, w = x.shape
    return _nchw(_nhwc(x).reshape(-1, c).index_select(1, index).view(n, h, w, -1))


def batchnorm_folded(bn: nn.Module, rows: np.ndarray, w4: torch.Tensor, bias: torch.Tensor | None):
    """``w4``, ``bias`` of the kept rows with ``bn`` applied: ``scale = gamma / sqrt(var + eps)``,
    ``w * scale``, ``(b - mean) * scale + beta``."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    var, mean = bn.running_var.detach()[idx], bn.running_mean.detach()[idx]
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.affine:
        gamma, beta = bn.weight.detach()[idx], bn.bias.detach()[idx]
        scale, shift = scale * gamma, shift * gamma + beta
    b0 = torch.zeros_like(scale) if bias is None else bias
    w = w4 * scale.to(w4.dtype).reshape(-1, *([1] * (w4.dim() - 1)))
    return w, (b0 * scale + shift).to(w4.dtype)


class RCConv2d(nn.Module):
    """A pruned conv. Modes:

    ``"conv"``
        ``F.conv2d`` on the gathered input channels ``in_index`` (weight ``r x c x kh x kw``; zeros where a
        kernel position is pruned). Multiply-adds: ``r * c * kh * kw`` per output position.
    ``"im2col"``
        The kept im2col rows, gathered straight from the (padded, channels-last) input by one flat
        ``index_select`` (``col_index[j] = channel * kh * kw + position`` within the input's channels), then
        one GEMM, run as a 1x1 conv (weight ``r x n_kept_columns``): the multiply-adds are exactly the kept
        entries', plus one gathered value per kept column and output position. The gather index depends on
        the input's spatial size and is cached per size.
    ``"empty"``
        No kept column: the bias (or zeros) at every output position.

    Inputs are made channels-last (a no-op when they already are); outputs are channels-last too.
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
        return self._empty(x)

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)

    def _empty(self, x: torch.Tensor) -> torch.Tensor:
        ho, wo = self._out_hw(x.shape[2], x.shape[3])
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
        ph, pw = self.padding
        ho, wo = self._out_hw(h, w)
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
    """A linear layer on the kept features ``in_index`` of its input's last dim (``None``: all of them)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_index):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.register_buffer("in_index", _index(in_index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_index is not None:
            x = x.index_select(x.dim() - 1, self.in_index)
        return F.linear(x, self.weight, self.bias)


class GroupedConv(nn.Module):
    """A compacted tied (grouped or depthwise) conv: ``F.conv2d(x[:, in_index], weight, groups=groups)``,
    then the output channels ``out_index`` (``None``: no gather). Groups that keep different numbers of
    channels are padded to the widest (the padding slots read any channel of their group with zero weights,
    and their outputs are dropped by ``out_index``), so the conv stays one grouped conv."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_index, out_index, *, groups: int,
                 stride, padding, dilation):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.register_buffer("in_index", _index(in_index))
        self.register_buffer("out_index", _index(out_index))
        self.groups = int(groups)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=_CL) if self.in_index is None else select_channels(x, self.in_index)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return y if self.out_index is None else select_channels(y, self.out_index)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, groups={self.groups}, padded={self.out_index is not None}"


class ChannelSelect(nn.Module):
    """The channels ``index`` of ``x`` (``select_channels``)."""

    def __init__(self, index):
        super().__init__()
        self.register_buffer("index", _index(index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_channels(x, self.index)


class ChannelScatterAdd(nn.Module):
    """``a + b`` where ``a`` and ``b`` hold different channel subsets: each is added at its positions
    (``None``: it holds all ``size`` channels, in order) along the channel dim ``axis``. Linear in the
    output's size."""

    def __init__(self, pos_a, pos_b, size: int, axis: int = 1):
        super().__init__()
        self.size, self.axis = int(size), int(axis)
        self.register_buffer("pos_a", _index(pos_a))
        self.register_buffer("pos_b", _index(pos_b))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 4 or self.axis != 1:
            d = self.axis
            if self.pos_a is None:
                return a if self.pos_b is None else a.index_add(d, self.pos_b, b)
            if self.pos_b is None:
                return b.index_add(d, self.pos_a, a)
            shape = list(a.shape)
            shape[d] = self.size
            return a.new_zeros(shape).index_add(d, self.pos_a, a).index_add(d, self.pos_b, b)
        # on the channels-last (n, h, w, c) views: index_add along the contiguous last dim
        if self.pos_a is None:
            return a if self.pos_b is None else _nchw(_nhwc(a).index_add(3, self.pos_b, _nhwc(b)))
        if self.pos_b is None:
            return _nchw(_nhwc(b).index_add(3, self.pos_a, _nhwc(a)))
        return _nchw(_zeros(a, self.size).index_add_(3, self.pos_a, _nhwc(a)).index_add_(3, self.pos_b, _nhwc(b)))


class ChannelScatter(nn.Module):
    """Put the channels of ``x`` (along dim ``axis``) at positions ``pos`` of a zero tensor with ``size``
    channels."""

    def __init__(self, pos, size: int, axis: int = 1):
        super().__init__()
        self.size, self.axis = int(size), int(axis)
        self.register_buffer("pos", _index(pos))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or self.axis != 1:
            shape = list(x.shape)
            shape[self.axis] = self.size
            return x.new_zeros(shape).index_copy(self.axis, self.pos, x)
        return _nchw(_zeros(x, self.size).index_copy_(3, self.pos, _nhwc(x)))
