"""The statistics of :func:`rcprune.torch.layer_statistics.layer_statistics` for many layers in one pass:
per calibration batch, one forward of the dense model (each layer's dense output W x_d kept) and one of the
pruned model (each layer's pruned inputs x_p met with it), so every layer's H, B, means and energies come
from the same pruned network (the non-sequential compensation: :func:`rcprune.torch.compensate`)."""
from __future__ import annotations

import torch
import torch.nn as nn

from rcprune.validation import InvalidInstanceError

from rcprune.torch.batches import input_tensor
from rcprune.torch.layer_inputs import layer_inputs

__all__ = ["pass_statistics"]


@torch.no_grad()
def pass_statistics(model: nn.Module, dense: nn.Module, entries, loader, max_batches: int | None = None) -> dict:
    """``{name: (H, B, mu_p, mu_y, e, N)}`` (uncentered, as ``layer_statistics`` gives them) for ``entries``
    = ``[(name, module, dense_module, weight, columns), ...]``; a module's first call per forward counts."""
    acc, seen_p, seen_d, ys = {}, {}, {}, {}
    for name, _, _, weight, columns in entries:
        a, m = len(columns), weight.shape[0]
        acc[name] = [torch.zeros(a, a, dtype=torch.float64), torch.zeros(m, a, dtype=torch.float64),
                     torch.zeros(a, dtype=torch.float64), torch.zeros(m, dtype=torch.float64),
                     torch.zeros(m, dtype=torch.float64), 0]

    def dense_hook(name, weight):
        def fn(mod, args):
            if name not in seen_d:
                seen_d[name] = True
                ys[name] = layer_inputs(mod, args[0].detach(), name).to(torch.float64) @ weight.T
        return fn

    def pruned_hook(name, idx):
        def fn(mod, args):
            if name in seen_p:
                return
            seen_p[name] = True
            xp = layer_inputs(mod, args[0].detach(), name).index_select(1, idx).to(torch.float64)
            y = ys.pop(name)
            S, B, sp, sy, yy, n = acc[name]
            S.addmm_(xp.T, xp)
            B.addmm_(y.T, xp)
            sp += xp.sum(0)
            sy += y.sum(0)
            yy += (y * y).sum(0)
            acc[name][5] = n + xp.shape[0]
        return fn

    handles = []
    try:
        for name, module, dmodule, weight, columns in entries:
            handles.append(dmodule.register_forward_pre_hook(dense_hook(name, weight)))
            handles.append(module.register_forward_pre_hook(pruned_hook(name, torch.from_numpy(columns))))
        for b, batch in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            x = input_tensor(batch, "calibration data")
            seen_p.clear()
            seen_d.clear()
            dense(x)
            model(x)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, (S, B, sp, sy, yy, n) in acc.items():
        if n == 0:
            raise InvalidInstanceError(f"the calibration data yielded no batch that reached layer {name!r}")
        out[name] = (S.numpy() / n, B.numpy() / n, sp.numpy() / n, sy.numpy() / n, yy.numpy() / n, n)
    return out
