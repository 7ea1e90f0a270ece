"""Calibration statistics of one layer in a pruned model against the same layer in the dense model: what
the compensated objective with the dense target needs (``proofs/compensated.md``, "Network level: the dense
output from the pruned inputs")."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rcprune.validation import InvalidInstanceError

from rcprune.torch.batches import input_tensor
from rcprune.torch.layer_inputs import layer_inputs

__all__ = ["layer_statistics"]


class _Captured(Exception):
    """Raised by a hook once it has the layer's input: the rest of the forward is not needed."""


def _capture(module: nn.Module, store: dict, key: str):
    def fn(mod, args):
        store[key] = args[0].detach()
        raise _Captured
    return module.register_forward_pre_hook(fn)


def _run_to(model: nn.Module, x: torch.Tensor) -> None:
    try:
        model(x)
    except _Captured:
        pass


@torch.no_grad()
def layer_statistics(model: nn.Module, dense: nn.Module, name: str, module: nn.Module, dense_module: nn.Module,
                     weight: torch.Tensor, columns: np.ndarray, loader, max_batches: int | None = None):
    """``(H, B, mu_p, mu_y, e, N)`` over the calibration data, uncentered: H = E[x_p x_p^T] of ``module``'s
    inputs in ``model`` (only ``columns``), B = E[y x_p^T] with y = ``weight`` x_d the dense layer's output
    (no bias) on ``dense_module``'s inputs in ``dense``, the means of x_p and y, e = E[y^2] per row and the
    number N of input vectors. Each pass stops at the layer (the rest of the forward is not run)."""
    store: dict = {}
    handles = [_capture(module, store, "p"), _capture(dense_module, store, "d")]
    a, m = len(columns), weight.shape[0]
    S = torch.zeros(a, a, dtype=torch.float64)
    B = torch.zeros(m, a, dtype=torch.float64)
    sp, sy, yy, n = torch.zeros(a, dtype=torch.float64), torch.zeros(m, dtype=torch.float64), \
        torch.zeros(m, dtype=torch.float64), 0
    idx = torch.from_numpy(columns)
    try:
        for b, batch in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            x = input_tensor(batch, "calibration data")
            _run_to(model, x)
            _run_to(dense, x)
            xp = layer_inputs(module, store["p"], name).index_select(1, idx).to(torch.float64)
            y = layer_inputs(dense_module, store["d"], name).to(torch.float64) @ weight.T
            S.addmm_(xp.T, xp)
            B.addmm_(y.T, xp)
            sp += xp.sum(0)
            sy += y.sum(0)
            yy += (y * y).sum(0)
            n += xp.shape[0]
    finally:
        for h in handles:
            h.remove()
    if n == 0:
        raise InvalidInstanceError("the calibration data yielded no batch")
    return S.numpy() / n, B.numpy() / n, sp.numpy() / n, sy.numpy() / n, yy.numpy() / n, n
