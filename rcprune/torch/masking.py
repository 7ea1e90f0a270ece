"""Masks as parametrizations (:mod:`rcprune.torch.rcmask`): a solution applied to the model, reversible
until ``bake``.

Every pruned layer's ``weight`` is masked by ``rows x effective columns`` and its bias by the kept rows;
every BatchNorm and tied (grouped, depthwise) conv gets its weight and bias masked outside the channels its
tensor can carry, so a
pruned channel is exactly zero everywhere and the masked model computes what
:func:`rcprune.torch.compact` builds. The user's values are stored beside the mask and never written
(:func:`restore` gives them back bit for bit); the user's parameter objects stay the trainable ones, so a
masked model deep-copies, saves and loads through ``state_dict`` (into a model masked the same way) and
trains like any model, and its pruned entries stay exactly zero.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune

from rcprune.network.model import NetworkSolution
from rcprune.validation import InvalidInstanceError

from rcprune.torch.extract import Extraction, extraction_of
from rcprune.torch.rcmask import rc_mask, register, unregister

__all__ = ["apply", "bake", "restore", "originals_under_masks", "is_masked", "layer_masks"]


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
        keep = extraction.channel_mask(info, solution)
        out[bn] = {"weight": torch.from_numpy(keep.copy()), "bias": torch.from_numpy(keep.copy())}
    out.update(extraction.tied_masks(solution))
    return out


def is_masked(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a mask (:func:`apply`'s, or a ``torch.nn.utils.prune`` one)."""
    if not isinstance(model, nn.Module):
        return False
    return prune.is_pruned(model) or any(rc_mask(m, p) is not None for m in model.modules() for p in ("weight", "bias"))


def _remove(model: nn.Module, *, bake: bool) -> nn.Module:
    for module in list(model.modules()):
        for pname in ("weight", "bias"):
            if rc_mask(module, pname) is not None:
                unregister(module, pname, bake=bake)
            elif hasattr(module, pname + "_mask") and hasattr(module, pname + "_orig"):   # torch.nn.utils.prune
                orig = getattr(module, pname + "_orig").detach().clone()
                prune.remove(module, pname)
                if not bake:
                    with torch.no_grad():
                        getattr(module, pname).copy_(orig)
    return model


def restore(model: nn.Module) -> nn.Module:
    """Remove every mask and put the original weights back. In place; returns ``model``.

    Every masked tensor gets back, bit for bit, the values it had before :func:`apply` (whatever a refit or
    training did to the masked model since), in the same parameter object. Buffers that masking does not
    touch, such as BatchNorm running statistics, stay as training left them.
    """
    return _remove(model, bake=False)


def originals_under_masks(model: nn.Module) -> nn.Module:
    """Put the original values back under the masks, the masks kept: every masked tensor is again as
    :func:`apply` left it, whatever a refit or training wrote since (the same parameter objects, so
    optimizers built on them keep working). In place; returns ``model``.

    Only rcprune's masks keep the originals apart from the trainable values; a ``torch.nn.utils.prune``
    mask trains its ``<name>_orig`` itself, so a model with one is an error."""
    with torch.no_grad():
        for name, module in model.named_modules():
            for pname in ("weight", "bias"):
                rc = rc_mask(module, pname)
                if rc is not None:
                    rc.value.copy_(module.parametrizations[pname].original)
                elif hasattr(module, pname + "_mask") and hasattr(module, pname + "_orig"):
                    raise InvalidInstanceError(f"{name or 'the model'}.{pname} carries a torch.nn.utils.prune mask, "
                                               "which keeps no original values apart from the trained ones")
    return model


def bake(model: nn.Module) -> nn.Module:
    """Make the masks permanent: every masked tensor becomes a plain parameter (the same object) holding
    its effective values, pruned entries exactly zero, and the stored originals are dropped. In place;
    returns ``model``."""
    return _remove(model, bake=True)


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
    On a model :func:`apply` masked before only the masks change: the stored originals and the current
    (refit or trained) values stay. Loading the ``state_dict`` of a masked model needs a model masked by
    :func:`apply` first (with any solution: the masks are loaded too). A tensor masked by
    ``torch.nn.utils.prune`` is refused, as is a BatchNorm without affine parameters on a tensor that
    loses channels (it cannot output zeros there).
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
        for pname in parts:
            if hasattr(module, pname + "_mask"):
                raise InvalidInstanceError(f"module {name!r} carries a torch.nn.utils.prune mask on {pname!r}: "
                                           "remove it (torch.nn.utils.prune.remove or rcprune.torch.restore) first")
        for pname, mask in parts.items():
            rc = rc_mask(module, pname)
            if rc is not None:
                rc.mask.copy_(mask)
            elif getattr(module, pname, None) is not None:
                register(module, pname, mask)
    return model
