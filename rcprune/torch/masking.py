"""Masks through ``torch.nn.utils.prune``: a solution applied to the model, reversible until ``bake``.

Every pruned layer gets ``weight_mask = rows x effective columns`` (``custom_from_mask``: the original is
kept as ``weight_orig``) and its bias masked by the kept rows; every BatchNorm gets its affine weight and
bias masked outside the channels its tensor can carry, so a pruned channel is exactly zero everywhere and
the masked model computes what :func:`rcprune.torch.compact` builds.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune

from rcprune.network.model import NetworkSolution
from rcprune.validation import InvalidInstanceError

from rcprune.torch.extract import Extraction, extraction_of

__all__ = ["apply", "bake", "restore", "is_masked", "layer_masks"]


def layer_masks(extraction: Extraction, solution: NetworkSolution) -> dict[str, dict[str, torch.Tensor]]:
    """Per module: the masks (``weight``, ``bias``) the solution puts on it, BatchNorms included."""
    eff = extraction.effective(solution)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, lm in extraction.layers.items():
        s = eff[name]
        w = np.outer(s.rows, s.cols).reshape(lm.weight_shape)
        out[lm.module] = {"weight": torch.from_numpy(w)}
        if lm.has_bias:
            out[lm.module]["bias"] = torch.from_numpy(s.rows.copy())
    for bn, node in extraction.batchnorms.items():
        info = extraction.nodes[node]
        keep = extraction.support_mask(info.support, info.group, solution)
        out[bn] = {"weight": torch.from_numpy(keep.copy()), "bias": torch.from_numpy(keep.copy())}
    return out


def is_masked(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a pruning mask."""
    return isinstance(model, nn.Module) and prune.is_pruned(model)


def restore(model: nn.Module) -> nn.Module:
    """Remove every mask and put the original (unmasked) weights back. In place; returns ``model``."""
    for module in model.modules():
        for pname in ("weight", "bias"):
            if hasattr(module, pname + "_mask") and hasattr(module, pname + "_orig"):
                orig = getattr(module, pname + "_orig").detach().clone()
                prune.remove(module, pname)
                with torch.no_grad():
                    getattr(module, pname).copy_(orig)
    return model


def apply(model: nn.Module, solution: NetworkSolution, extraction: Extraction | None = None) -> nn.Module:
    """Mask ``model`` in place with ``solution`` (replacing earlier masks); returns ``model``.

    Parameters
    ----------
    model : nn.Module
        The model ``extraction`` was made from (same module names and weight shapes).
    solution : NetworkSolution
        For ``extraction.instance``.
    extraction : Extraction, optional
        Default: the latest :func:`rcprune.torch.extract` of this model object.

    Notes
    -----
    Reversible: :func:`restore` gives the original weights back; :func:`bake` makes the masks permanent.
    A BatchNorm without affine parameters on a tensor that loses channels cannot output zeros there and
    is refused.
    """
    extraction = extraction_of(model, extraction)
    masks = layer_masks(extraction, solution)
    modules = dict(model.named_modules())
    for name, parts in masks.items():
        module = modules[name]
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.affine:
            if not bool(parts["weight"].all()):
                raise InvalidInstanceError(f"batch norm {name!r} has no affine parameters, so its pruned channels "
                                           "would not be zero; give it affine=True or protect its channels")
            continue
        for pname, mask in parts.items():
            if getattr(module, pname, None) is None:
                continue
            if hasattr(module, pname + "_mask"):   # already masked: replace the mask, keep the original
                getattr(module, pname + "_mask").copy_(mask.to(getattr(module, pname + "_mask").dtype))
            else:
                p = getattr(module, pname)
                prune.custom_from_mask(module, pname, mask.to(device=p.device, dtype=p.dtype))
    return model


def bake(model: nn.Module) -> nn.Module:
    """Make the masks permanent (``prune.remove``): the pruned entries become zeros of plain parameters.
    In place; returns ``model``."""
    for module in model.modules():
        for pname in ("weight", "bias"):
            if hasattr(module, pname + "_mask") and hasattr(module, pname + "_orig"):
                prune.remove(module, pname)
    return model
