"""Zero-shot least-squares refit of the kept weights, layer by layer (as in layerwise pruning by least
squares, e.g. Dong et al. 2017, "Learning to prune deep neural networks via layer-wise optimal brain
surgeon"; He et al. 2017, "Channel pruning for accelerating very deep neural networks").

For each layer in order, with ``X`` the kept im2col columns of its input in the *pruned* model (so earlier
refits are accounted for) and ``Y`` the kept rows of its output in the *unpruned* model, on calibration
data, the kept weights become ``W = argmin ||Y - X W^T||^2 + lam ||W||^2`` (ridge; with the bias as a
column of ones). RC pruning makes this one solve per layer: every kept row shares the kept columns.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rcprune.network.model import NetworkSolution
from rcprune.validation import InvalidInstanceError, check_int_option, check_nonnegative

from rcprune.torch.batches import check_loader, input_tensor
from rcprune.torch.extract import Extraction, extraction_of
from rcprune.torch.masking import is_masked, restore
from rcprune.torch.rcmask import rc_mask

__all__ = ["ls_refit", "RefitReport"]


@dataclass(frozen=True)
class RefitReport:
    """Per layer: relative reconstruction error ``||Y - X W^T||^2 / ||Y||^2`` of its kept rows before and
    after the refit, and whether the refit was kept (it is only when it lowers the error)."""

    layers: tuple[dict, ...]

    def table(self) -> list[dict]:
        return [dict(r) for r in self.layers]


def _design(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Rows = output positions, columns = the layer's im2col columns."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(x.shape[0], -1)


def _outputs(y: torch.Tensor) -> torch.Tensor:
    return y.transpose(1, -1).reshape(-1, y.shape[1]) if y.dim() == 4 else y


def ls_refit(model: nn.Module, solution: NetworkSolution, calibration_loader, *, extraction: Extraction | None = None,
             ridge: float = 1e-3, max_batches: int | None = None, device: str = "cpu") -> RefitReport:
    """Refit the kept weights (and biases) of every layer of a masked ``model``; in place.

    Parameters
    ----------
    model : nn.Module
        Masked with ``solution`` by :func:`rcprune.torch.apply`. The refit values replace the current
        (trainable) values at kept positions; the stored originals are not touched, so
        :func:`rcprune.torch.restore` still gives the original model back.
    calibration_loader : iterable of batches
        ``(inputs, ...)`` tuples or input tensors; labels are not used.
    extraction : Extraction, optional
        Default: the latest :func:`rcprune.torch.extract` of this model object.
    ridge : float
        ``lam = ridge * mean(diag(X^T X))``.

    Returns
    -------
    RefitReport

    Notes
    -----
    Each layer accumulates ``X^T X`` and ``X^T Y`` over the calibration set (two forward passes per layer),
    then solves one ``c x c`` system for its ``c`` kept columns.
    """
    if not is_masked(model):
        raise InvalidInstanceError("ls_refit needs a masked model: call rcprune.torch.apply(model, solution) first")
    if isinstance(calibration_loader, Extraction):
        raise InvalidInstanceError("ls_refit(model, solution, calibration_loader, extraction=...): the third "
                                   "argument is the calibration data, the extraction is a keyword")
    ridge = check_nonnegative(ridge, "ridge")
    check_loader(calibration_loader, "calibration_loader")
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    extraction = extraction_of(model, extraction)
    inst = extraction.instance
    eff = extraction.effective(solution)
    mods = dict(model.named_modules())
    plain = [lm.module for lm in extraction.layers.values()
             if rc_mask(mods[lm.module], "weight") is None or (lm.has_bias and rc_mask(mods[lm.module], "bias") is None)]
    if plain:
        raise InvalidInstanceError(f"layer(s) {plain} are not masked by rcprune.torch.apply: apply(model, solution) "
                                   "first (a torch.nn.utils.prune mask has no place for refit values)")
    dense = restore(copy.deepcopy(model)).to(device).eval()
    was = model.training
    model.to(device).eval()
    dmods = dict(dense.named_modules())
    rows_out = []
    for name in inst.layer_names:
        lm = extraction.layers[name]
        mod, dmod = mods[lm.module], dmods[lm.module]
        rows = torch.from_numpy(np.flatnonzero(eff[name].rows))
        kc = torch.from_numpy(np.flatnonzero(eff[name].cols))
        if len(rows) == 0 or len(kc) == 0:
            continue
        has_bias = mod.bias is not None
        c = len(kc) + int(has_bias)
        G = torch.zeros(c, c, dtype=torch.float64)
        B = torch.zeros(c, len(rows), dtype=torch.float64)
        yy = 0.0
        store: dict[str, torch.Tensor] = {}
        h1 = mod.register_forward_pre_hook(lambda m, a: store.__setitem__("x", a[0].detach()))
        h2 = dmod.register_forward_hook(lambda m, a, out: store.__setitem__("y", out.detach()))
        try:
            with torch.no_grad():
                for b, batch in enumerate(calibration_loader):
                    if max_batches is not None and b >= max_batches:
                        break
                    x = input_tensor(batch, "calibration_loader").to(device)
                    model(x)
                    dense(x)
                    X = _design(mod, store["x"]).index_select(1, kc).to(torch.float64)
                    if has_bias:
                        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=torch.float64)], 1)
                    Y = _outputs(store["y"]).index_select(1, rows).to(torch.float64)
                    G += X.T @ X
                    B += X.T @ Y
                    yy += float((Y * Y).sum())
        finally:
            h1.remove()
            h2.remove()
        w_val = rc_mask(mod, "weight").value.data
        w2 = w_val.view(w_val.shape[0], -1)
        W0 = w2[rows][:, kc].to(torch.float64)
        if has_bias:
            b_val = rc_mask(mod, "bias").value.data
            W0 = torch.cat([W0, b_val[rows].to(torch.float64)[:, None]], 1)

        def err(W: torch.Tensor) -> float:
            return float(yy - 2 * (W * B.T).sum() + ((W @ G) * W).sum())

        lam = ridge * float(G.diagonal().mean()) + 1e-12
        W = torch.linalg.solve(G + lam * torch.eye(c, dtype=torch.float64), B).T
        before, after = err(W0), err(W)
        kept = after < before
        if kept:
            w2[rows[:, None], kc[None, :]] = W[:, :len(kc)].to(w2.dtype)
            if has_bias:
                b_val[rows] = W[:, -1].to(b_val.dtype)
        norm = max(yy, 1e-30)
        rows_out.append({"layer": name, "error_before": max(before, 0.0) / norm,
                         "error_after": max(after if kept else before, 0.0) / norm, "refit": bool(kept),
                         "kept_rows": len(rows), "kept_cols": len(kc)})
    model.train(was)
    return RefitReport(tuple(rows_out))
