"""BatchNorm after pruning: which BatchNorm normalizes which layer's output, and re-estimating the running
statistics on calibration data (a pruned conv's outputs have a new mean and variance; the statistics of
the dense model would mis-normalize them).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
>>> net[1].running_var.fill_(100.0)
tensor([100., 100.])
>>> reestimate_batchnorm(net, [torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(0))])
1
>>> bool(net[1].running_var.lt(100).all()), net.training
(True, True)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rcprune.torch.batches import check_loader, input_tensor
from rcprune.torch.extract import Extraction
from rcprune.validation import InvalidInstanceError, check_int_option

__all__ = ["reestimate_batchnorm", "following_batchnorm", "output_scales"]


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, loader, *, max_batches: int | None = None) -> int:
    """Replace every BatchNorm's running mean and variance by their averages over ``loader`` (the model's
    own, current forward; cumulative average, not momentum); in place. Every other module stays in eval
    mode during the passes (dropout off); modes and momenta are restored. Returns the number of
    BatchNorms re-estimated."""
    check_loader(loader, "calibration data")
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    norms = _batchnorms(model)
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {bn: bn.momentum for bn in norms}
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    seen = 0
    try:
        for b, batch in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            model(input_tensor(batch, "calibration data"))
            seen += 1
    finally:
        for m, mode in modes.items():
            m.train(mode)
        for bn, momentum in momenta.items():
            bn.momentum = momentum
    if not seen:
        raise InvalidInstanceError("the calibration data yielded no batch: BatchNorm statistics cannot be re-estimated")
    return len(norms)


def following_batchnorm(extraction: Extraction) -> dict[str, str]:
    """Per layer whose output goes straight into a BatchNorm (nothing in between): that BatchNorm's module
    name."""
    by_module = {lm.module: name for name, lm in extraction.layers.items()}
    nodes = {node.name: node for node in extraction.graph.nodes}
    out = {}
    for bn, node_name in extraction.batchnorms.items():
        src = nodes[node_name].args[0] if nodes[node_name].args else None
        if getattr(src, "op", None) == "call_module" and src.target in by_module:
            out[by_module[src.target]] = bn
    return out


def output_scales(model: nn.Module, extraction: Extraction) -> dict[str, np.ndarray]:
    """Per layer, the squared factor by which each output channel's error reaches the next layer:
    gamma^2 / (running_var + eps) of the BatchNorm right after it, else 1 (float64)."""
    modules = dict(model.named_modules())
    after = following_batchnorm(extraction)
    out = {}
    for name, lm in extraction.layers.items():
        bn = modules[after[name]] if name in after else None
        if bn is None:
            out[name] = np.ones(lm.weight_shape[0])
            continue
        var = bn.running_var.detach().double() if bn.running_var is not None else torch.ones(bn.num_features)
        gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
        out[name] = (gamma ** 2 / (var + bn.eps)).cpu().numpy()
    return out
