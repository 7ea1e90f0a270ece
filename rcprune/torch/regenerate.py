"""Channel regeneration during fine-tuning: live channels whose BatchNorm scale and its gradient collapsed
to about zero are re-initialized, so the capacity a pruned network kept is not lost to dead channels.

A live channel c of a BatchNorm (kept by the mask, if the model is masked) has collapsed when
``|gamma_c| <= threshold * max |gamma|`` and ``|grad gamma_c| <= threshold * max |grad gamma|`` over that
BatchNorm's live channels. It gets ``gamma_c`` = the median ``|gamma|`` of the other live channels (1 if
none), ``beta_c = 0``, and its kernel rows in the layers that produce it (the BatchNorm's support in the
extraction; for a BatchNorm on a concatenation, the producers of the channel's segment) are drawn again,
Kaiming-normal, on their kept entries only: pruned entries stay zero.
Writes go to the trainable values, never to a mask's stored original (``restore`` still gives that back).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from rcprune.torch.extract import Extraction, extraction_of
from rcprune.torch.rcmask import keep_mask, trainable_tensor
from rcprune.validation import check_real_option, check_seed

__all__ = ["regenerate_channels"]


def regenerate_channels(model: nn.Module, extraction: Extraction | None = None, *, threshold: float = 1e-3,
                        seed: int = 0) -> dict[str, int]:
    """Re-initialize the collapsed live channels of every BatchNorm of ``model``; in place.

    Returns the number of channels regenerated per BatchNorm module (only those with any). O(weights of
    the producing layers of the regenerated channels).

    >>> import torch
    >>> from rcprune import torch as rct
    >>> from rcprune.torch.models import cifar_resnet
    >>> model = cifar_resnet(depth=8, width=4, in_channels=1, num_classes=3).eval()
    >>> _ = rct.extract(model, torch.zeros(1, 1, 8, 8))
    >>> with torch.no_grad():
    ...     model.bn1.weight[:2] = 0.0
    >>> regenerate_channels(model)
    {'bn1': 2}
    """
    ext = extraction_of(model, extraction)
    threshold = check_real_option(threshold, "threshold", 0.0, 1.0)
    g = torch.Generator().manual_seed(check_seed(seed))
    modules = dict(model.named_modules())
    done: dict[str, int] = {}
    for bn_name, node in ext.batchnorms.items():
        bn = modules[bn_name]
        if not getattr(bn, "affine", False):
            continue
        gamma = bn.weight.detach()
        keep = keep_mask(bn, "weight")
        live = keep.bool() if keep is not None else torch.ones_like(gamma, dtype=torch.bool)
        if not live.any():
            continue
        scale = trainable_tensor(bn, "weight")
        grad = scale.grad.detach().abs() if scale.grad is not None else torch.zeros_like(gamma)
        small = gamma.abs() <= threshold * gamma[live].abs().max()
        still = grad <= threshold * grad[live].max()
        collapsed = live & small & still
        n = int(collapsed.sum())
        if n == 0:
            continue
        others = gamma[live & ~collapsed].abs()
        idx = collapsed.nonzero().flatten()
        with torch.no_grad():
            scale[idx] = float(others.median()) if others.numel() else 1.0
            trainable_tensor(bn, "bias")[idx] = 0.0
            offset = 0
            for seg in ext.nodes[node].segments:   # a concatenation: each segment's producers, at its offset
                size = ext.instance.group(seg.group).size
                rows = idx[(idx >= offset) & (idx < offset + size)] - offset
                offset += size
                for layer in sorted(seg.support or ()) if len(rows) else ():
                    conv = modules[ext.layers[layer].module]
                    w = trainable_tensor(conv, "weight")
                    fresh = torch.randn((len(rows), *w.shape[1:]), generator=g) * math.sqrt(2.0 / w[0].numel())
                    mask = keep_mask(conv, "weight")
                    if mask is not None:
                        fresh = fresh * mask[rows].to(fresh.dtype)
                    w[rows] = fresh.to(device=w.device, dtype=w.dtype)
        done[bn_name] = n
    return done
