"""Data-aware importance scores for the network solvers: s_ij = w_ij^2 H_jj g_i, the output error that
removing weight (i, j) alone causes on calibration data (H = X X^T / N of the layer's inputs), in the
units the next layer sees (g_i = gamma_i^2 / (var_i + eps) of the BatchNorm after the layer, else 1).

Only diag H is accumulated (O(n) memory per layer), so the scores cost one pass over the calibration data.
They are additive, as the network solvers need; the compensated objective (the error after the refit,
:mod:`rcprune.torch.compensate`) then chooses each layer's columns within the budget they allocate.

>>> import torch
>>> from rcprune.torch.extract import extract
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
>>> ext = extract(net, torch.zeros(1, 3), sparsity=0.5)
>>> s = hessian_scores(net, ext, [torch.tensor([[1.0, 0.0, 2.0]])])
>>> bool(s["0"][:, 1].any()), s["0"].shape      # input 1 is always zero: its weights cost nothing
(False, (2, 3))
"""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from rcprune.torch.batchnorm import output_scales
from rcprune.torch.extract import Extraction
from rcprune.torch.rcmask import original_tensor
from rcprune.torch.retention import layer_hessians
from rcprune.validation import InvalidInstanceError, check_int_option

__all__ = ["hessian_scores", "input_energies"]


def input_energies(model: nn.Module, extraction: Extraction, loader, *, max_batches: int | None = None) -> dict[str, np.ndarray]:
    """diag(H) = mean of x_j^2 over the calibration inputs of every layer (im2col columns for a conv), in
    float64 (:func:`rcprune.torch.retention.layer_hessians` with ``diagonal=True``)."""
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    out, _ = layer_hessians(model, loader, [lm.module for lm in extraction.layers.values()], max_batches=max_batches,
                            diagonal=True)
    out = {name: out[lm.module] for name, lm in extraction.layers.items()}
    bad = [n for n, v in out.items() if not np.isfinite(v).all()]
    if bad:
        raise InvalidInstanceError(f"the calibration inputs of layer(s) {bad[:5]} are not finite (NaN or inf)")
    return out


def hessian_scores(model: nn.Module, extraction: Extraction, loader, *, max_batches: int | None = None) -> dict[str, np.ndarray]:
    """Per layer, the (C_out, n) matrix s_ij = w_ij^2 H_jj g_i of the model's original weights."""
    diag = input_energies(model, extraction, loader, max_batches=max_batches)
    scales = output_scales(model, extraction)
    modules = dict(model.named_modules())
    out = {}
    for name, lm in extraction.layers.items():
        w = original_tensor(modules[lm.module]).detach().double().reshape(lm.weight_shape[0], -1).cpu().numpy()
        out[name] = w * w * diag[name][None, :] * scales[name][:, None]
    return out
