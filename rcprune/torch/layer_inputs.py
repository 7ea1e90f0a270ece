"""A layer's input as the matrix its weight multiplies: im2col columns (ordered C_in, kh, kw like
``weight.view(C_out, -1)``) of a Conv2d, one row per output position; the last dimension of a Linear's input.

>>> import torch
>>> conv = torch.nn.Conv2d(2, 3, 3, padding=1)
>>> layer_inputs(conv, torch.zeros(4, 2, 5, 5)).shape
torch.Size([100, 18])
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rcprune.validation import InvalidInstanceError

__all__ = ["layer_inputs"]


def _conv_padding(module: nn.Conv2d, name: str) -> tuple[int, int]:
    if module.padding_mode != "zeros":
        raise InvalidInstanceError(f"layer {name!r}: padding_mode {module.padding_mode!r} is not supported "
                                   "(im2col columns assume zero padding)")
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        if any(t % 2 for t in totals):
            raise InvalidInstanceError(f"layer {name!r}: padding='same' with an asymmetric pad is not supported")
        return tuple(t // 2 for t in totals)
    return tuple(module.padding)


def layer_inputs(module: nn.Module, x: torch.Tensor, name: str = "layer") -> torch.Tensor:
    """The layer's input as a (N, n) matrix: im2col columns (ordered C_in, kh, kw like the weight) of a
    Conv2d, one row per output position; the last dimension of a Linear's input, one row per vector."""
    if isinstance(module, nn.Conv2d):
        return _im2col(x, module.kernel_size, _conv_padding(module, name), module.stride, module.dilation)
    return x.reshape(-1, x.shape[-1])


def _im2col(x: torch.Tensor, kernel, padding, stride, dilation) -> torch.Tensor:
    """``F.unfold(x, ...).transpose(1, 2).reshape(-1, C kh kw)`` as one strided view and one copy: the same
    numbers, without unfold's fine-grained parallel loop (seconds per call on an oversubscribed CPU)."""
    if x.dim() == 3:
        x = x[None]
    (kh, kw), (ph, pw), (sh, sw), (dh, dw) = kernel, padding, stride, dilation
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    b, c, h, w = xp.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    sb, sc, sy, sx = xp.stride()
    view = xp.as_strided((b, oh, ow, c, kh, kw), (sb, sy * sh, sx * sw, sc, sy * dh, sx * dw))
    return view.reshape(b * oh * ow, c * kh * kw)
