"""Which layers :func:`rcprune.torch.retention_prune` and :func:`rcprune.torch.hessians.layer_hessians` work
on: by default every Conv2d with ``groups == 1`` and every Linear; named layers are checked.

>>> import torch
>>> retention_layers(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2), torch.nn.Linear(2, 2)))
(['1'], ['0'])
"""
from __future__ import annotations

import torch.nn as nn

from rcprune.validation import InvalidInstanceError

__all__ = ["retention_layers"]


def retention_layers(model: nn.Module, layers=None) -> tuple[list[str], list[str]]:
    """``(selected, skipped)`` module names. Default: every Conv2d with ``groups == 1`` and every Linear,
    the stem and the classifier included (grouped convs are skipped); named layers must be such modules."""
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        chosen = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
        skipped = [n for n in chosen if isinstance(modules[n], nn.Conv2d) and modules[n].groups != 1]
        return [n for n in chosen if n not in skipped], skipped
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple, set, frozenset)) or not all(isinstance(n, str) for n in layers):
        raise InvalidInstanceError(f"layers must be module names (a name or a list of names), got {layers!r}")
    layers = list(layers)
    if not layers:
        raise InvalidInstanceError("layers is empty: name at least one Conv2d or Linear module")
    for n in layers:
        if n not in modules:
            close = [c for c in modules if isinstance(modules[c], (nn.Conv2d, nn.Linear))][:8]
            raise InvalidInstanceError(f"unknown layer name {n!r}; conv/linear modules of the model: {close} ...")
        m = modules[n]
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            raise InvalidInstanceError(f"layer {n!r} is a {type(m).__name__}: only Conv2d and Linear can be pruned")
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise InvalidInstanceError(f"layer {n!r} is a grouped convolution (groups={m.groups}): only groups == 1 "
                                       "is supported (its weight is not one im2col matrix)")
    if len(set(layers)) != len(layers):
        raise InvalidInstanceError(f"layers names a module twice: {layers}")
    return layers, []
