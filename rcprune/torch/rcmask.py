"""The mask of one tensor of one module, as a ``torch.nn.utils.parametrize`` parametrization.

``register(module, "weight", keep)`` leaves three tensors where ``module.weight`` was:

* ``module.parametrizations.weight.original``: a buffer, a copy of the user's values, never written
  until the mask is removed (so :func:`unregister` can give them back bit for bit);
* ``module.parametrizations.weight[0].value``: the user's own ``nn.Parameter`` object (so optimizers built
  before masking keep training it), which a refit and training may change;
* ``module.parametrizations.weight[0].mask``: the boolean keep-mask, a buffer.

``module.weight`` is then ``value`` with the pruned entries exactly zero: an ordinary autograd expression,
so the module can be deep-copied, saved through ``state_dict`` and trained.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

__all__ = ["RCMask", "rc_mask", "register", "unregister", "original_tensor", "trainable_tensor", "keep_mask"]


class RCMask(nn.Module):
    """``value`` with the entries outside ``mask`` set to zero (the parametrization's input, the stored
    original, is not used: it is kept only to be given back)."""

    def __init__(self, value: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        if isinstance(value, nn.Parameter):
            self.value = value
        else:
            self.register_buffer("value", value)
        self.register_buffer("mask", mask.to(device=value.device, dtype=torch.bool))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return self.value.masked_fill(~self.mask, 0)


def rc_mask(module: nn.Module, pname: str) -> RCMask | None:
    """The :class:`RCMask` on ``module.<pname>``, or None."""
    if not parametrize.is_parametrized(module, pname):
        return None
    first = module.parametrizations[pname][0]
    return first if isinstance(first, RCMask) else None


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own. ``copy.deepcopy`` shares the class that
    ``parametrize`` made for the original between original and copy, and adding or removing a
    parametrization edits that class, which would break the other module."""
    if not parametrize.is_parametrized(module):
        return
    cls = type(module)
    names = set(module.parametrizations)
    body = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, body)
    for name in names:
        parametrize._inject_property(module, name)


def register(module: nn.Module, pname: str, keep: torch.Tensor) -> RCMask:
    """Mask ``module.<pname>`` (a plain parameter or buffer) with ``keep``; returns the parametrization."""
    value = getattr(module, pname)
    rc = RCMask(value, keep)
    _own_class(module)
    # the parametrization's ``original`` is a copy: the user's tensor object becomes the trainable value
    delattr(module, pname)
    module.register_buffer(pname, value.detach().clone())
    parametrize.register_parametrization(module, pname, rc)
    return rc


def unregister(module: nn.Module, pname: str, *, bake: bool) -> None:
    """Remove the :class:`RCMask` of ``module.<pname>``: the user's tensor object comes back holding the
    masked values (``bake``) or the original values, bit for bit (not ``bake``)."""
    _own_class(module)
    plist = module.parametrizations[pname]
    rc = plist[0]
    value = rc.value
    with torch.no_grad():
        new = rc(plist.original) if bake else plist.original
        parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
        delattr(module, pname)
        value.copy_(new)
    if isinstance(value, nn.Parameter):
        module.register_parameter(pname, value)
    else:
        module.register_buffer(pname, value)


def original_tensor(module: nn.Module, pname: str = "weight") -> torch.Tensor | None:
    """The unmasked tensor: the stored original under an :class:`RCMask`, ``<pname>_orig`` under a
    ``torch.nn.utils.prune`` mask, else ``module.<pname>`` (None when absent)."""
    rc = rc_mask(module, pname)
    if rc is not None:
        return module.parametrizations[pname].original
    return getattr(module, pname + "_orig", getattr(module, pname, None))


def trainable_tensor(module: nn.Module, pname: str = "weight") -> torch.Tensor | None:
    """The tensor that training (and a refit) writes: an :class:`RCMask`'s ``value``, ``<pname>_orig`` under a
    ``torch.nn.utils.prune`` mask, else ``module.<pname>`` (None when absent)."""
    rc = rc_mask(module, pname)
    if rc is not None:
        return rc.value
    return getattr(module, pname + "_orig", getattr(module, pname, None))


def keep_mask(module: nn.Module, pname: str = "weight") -> torch.Tensor | None:
    """The keep-mask on ``module.<pname>`` (an :class:`RCMask`'s or a ``torch.nn.utils.prune`` one), or None."""
    rc = rc_mask(module, pname)
    if rc is not None:
        return rc.mask
    return getattr(module, pname + "_mask", None)
