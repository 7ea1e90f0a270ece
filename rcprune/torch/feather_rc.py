"""Feather's structured variant (``FeatherConfig(structure="rc")``): the row-and-column mask is re-solved by
a network method on the dense weights every ``solve_every`` steps, under the RC budget of the scheduled
target, and trained through a straight-through mask (:class:`MaskSTE`: pruned entries' gradients scaled by
``theta``); at the freeze the model is masked by :func:`rcprune.torch.apply` with the last solution.
Everything else (schedule, configuration, the unstructured training it extends) is in
:mod:`rcprune.torch.feather`.

>>> import torch
>>> w = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
>>> out = MaskSTE.apply(w, torch.tensor([True, False, True]), 0.5)
>>> out.sum().backward()
>>> out.tolist(), w.grad.tolist()
([1.0, 0.0, 3.0], [1.0, 0.5, 1.0])
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from rcprune.torch.batches import labelled_batch
from rcprune.torch.feather import FeatherConfig, FeatherTraining, cubic_sparsity
from rcprune.torch.masking import is_masked
from rcprune.validation import InvalidInstanceError

__all__ = ["MaskSTE", "RCFeatherTraining"]


class MaskSTE(torch.autograd.Function):
    """``MaskSTE.apply(w, keep, theta)``: ``w`` with the entries outside ``keep`` zero; backward the incoming
    gradient on the kept entries and ``theta`` times it on the others (the structured variant's operator)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, keep: torch.Tensor, theta: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.theta = theta
        return w.masked_fill(~keep, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, grad * ctx.theta), None, None


class _RCThreshold(nn.Module):
    """The parametrization of one tensor during the structured ramp: :class:`MaskSTE` with the latest RC mask."""

    def __init__(self, keep: torch.Tensor, state: "RCFeatherTraining"):
        super().__init__()
        self.register_buffer("keep", keep.clone())
        self._state = [state]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return MaskSTE.apply(w, self.keep, self._state[0].config.theta)


class RCFeatherTraining(FeatherTraining):
    """The structured (row-and-column) variant: the RC mask is re-solved on the dense weights every
    ``solve_every`` steps at the scheduled target and trained through :class:`MaskSTE`; at the freeze the
    model is masked by :func:`rcprune.torch.apply` with the last solution (stored originals: the tensors
    from before training)."""

    def __init__(self, config: FeatherConfig, model: nn.Module, train_loader, epochs: int):
        super().__init__(config, model, train_loader, epochs)
        self.model = model
        self.example = None
        self.extraction = None
        self.solution = None
        self.tensors: dict[tuple[str, str], nn.Module] = {}
        self.solves = 0

    def probe(self, model, train_loader, device, check_labels) -> None:
        super().probe(model, train_loader, device, check_labels)
        from rcprune.torch.extract import extract

        x, _ = labelled_batch(next(iter(train_loader)), "train_loader")
        self.example = x[:1].to(device)
        busy = [n for n, m in model.named_modules() if is_masked(m) or parametrize.is_parametrized(m)]
        if busy:
            raise InvalidInstanceError(f"structure='rc' learns the RC mask of an unmasked model, but module(s) {busy} "
                                       "already carry a mask or parametrization: rcprune.torch.restore(model) first")
        floor = min(self.config.min_density, (1.0 - self.config.sparsity) / 2)
        self.extraction = extract(model, self.example, sparsity=self.config.initial_sparsity, min_density=floor)

    def _solve(self, sparsity: float) -> dict[str, dict[str, torch.Tensor]]:
        import dataclasses

        import numpy as np

        from rcprune.solve import solve
        from rcprune.torch.masking import layer_masks

        ext = self.extraction
        modules = dict(self.model.named_modules())
        scores = {}
        for name, lm in ext.layers.items():
            m = modules[lm.module]
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            scores[name] = np.abs(w.detach().to(torch.float64).cpu().numpy().reshape(w.shape[0], -1))
        inst = ext.instance.replace(scores=scores, sparsity=sparsity)
        self.extraction = dataclasses.replace(ext, instance=inst)
        self.solution = solve(inst, method=self.config.method).solution
        self.solves += 1
        return layer_masks(self.extraction, self.solution)

    def install(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        modules = dict(self.model.named_modules())
        masks = self._solve(self.config.initial_sparsity)
        for mname, parts in masks.items():
            module = modules[mname]
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.affine:
                if not bool(parts["weight"].all()):
                    raise InvalidInstanceError(f"batch norm {mname!r} has no affine parameters: its pruned channels "
                                               "would not be zero")
                continue
            for pname, keep in parts.items():
                t = getattr(module, pname, None)
                if t is None:
                    continue
                self.before[(mname, pname)] = t.detach().clone()
                keep = keep.to(device=t.device, dtype=torch.bool).reshape(t.shape)
                parametrize.register_parametrization(module, pname, _RCThreshold(keep, self))
                self.tensors[(mname, pname)] = module

    def before_step(self) -> None:
        if not self.frozen and self.step >= self.freeze_step:
            self.freeze()
        if not self.frozen:
            c = self.config
            target = cubic_sparsity(self.step, self.total, c.sparsity, initial=c.initial_sparsity,
                                    ramp_start=c.ramp_start, ramp_end=c.ramp_end)
            if self.step % c.solve_every == 0:
                self._refresh(self._solve(target))
            self.target = target
        self.step += 1

    @torch.no_grad()
    def _refresh(self, masks) -> None:
        for (mname, pname), module in self.tensors.items():
            keep = module.parametrizations[pname][0].keep
            keep.copy_(masks[mname][pname].to(device=keep.device, dtype=torch.bool).reshape(keep.shape))

    @torch.no_grad()
    def freeze(self) -> None:
        if self.frozen:
            return
        from rcprune.torch.masking import apply

        self._solve(self.config.sparsity)
        self.target = self.config.sparsity
        for (mname, pname), module in self.tensors.items():
            parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
        apply(self.model, self.solution, self.extraction)
        for (mname, pname), module in self.tensors.items():
            module.parametrizations[pname].original.copy_(self.before[(mname, pname)])
        self.before = {}
        self.frozen = True

    def record(self) -> dict:
        return {"sparsity": float(self.target), "threshold": None, "mask_frozen": self.frozen, "solves": self.solves}

    def abort(self) -> None:
        if not self.frozen:
            for (mname, pname), module in self.tensors.items():
                if parametrize.is_parametrized(module, pname):
                    parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
