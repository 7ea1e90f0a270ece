"""Streaming, shardable calibration statistics: per layer, the float64 sum of x x^T over the layer's input
vectors (im2col columns for a conv) and their count, accumulated batch by batch so the calibration set
never has to be in memory at once. Shards (separate loaders: files, ranks, machines) are summed apart --
serially or on joblib workers (:func:`rcprune.parallel.map_layers`) -- merged by addition in shard order,
and divided once: H = sum / N.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
>>> a, b = [torch.ones(2, 3)], [2 * torch.ones(1, 3)]
>>> whole, _ = layer_hessians(net, a + b)
>>> split, counts = layer_hessians(net, shards=[a, b])
>>> bool((whole["0"] == split["0"]).all()), counts["0"], float(split["0"][0, 0])
(True, 3, 2.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from rcprune.parallel import map_layers
from rcprune.validation import InvalidInstanceError, check_int_option

from rcprune.torch.batches import check_loader, input_tensor
from rcprune.torch.layer_inputs import layer_inputs
from rcprune.torch.retention_layers import retention_layers

__all__ = ["HessianSums", "hessian_sums", "layer_hessians"]


@dataclass(frozen=True)
class HessianSums:
    """Per layer, ``sums[name]`` = sum of x x^T (n x n; the length-n sum of x * x with ``diagonal``) over
    ``counts[name]`` input vectors, in float64. Shards merge with ``+``; :meth:`hessians` divides."""

    sums: dict
    counts: dict
    diagonal: bool = False

    def __add__(self, other: "HessianSums") -> "HessianSums":
        if not isinstance(other, HessianSums):
            return NotImplemented
        if list(self.sums) != list(other.sums) or self.diagonal != other.diagonal:
            raise InvalidInstanceError("calibration shards must cover the same layers the same way (diagonal or "
                                       f"full): {list(self.sums)} vs {list(other.sums)}")
        return HessianSums({n: self.sums[n] + other.sums[n] for n in self.sums},
                           {n: self.counts[n] + other.counts[n] for n in self.counts}, self.diagonal)

    def hessians(self) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """``(H, N)`` per layer: sum / N; a layer no input reached is an error naming it."""
        missing = [n for n, c in self.counts.items() if c == 0]
        if missing:
            raise InvalidInstanceError(f"no calibration input reached layer(s) {missing}: is the calibration data "
                                       "empty?")
        return {n: s / self.counts[n] for n, s in self.sums.items()}, dict(self.counts)


@torch.no_grad()
def hessian_sums(model: nn.Module, loader, names: list[str], *, max_batches: int | None = None,
                 progress: bool = False, diagonal: bool = False) -> HessianSums:
    """One streaming pass of ``model`` (eval mode, restored after) over ``loader``: the sums and counts of
    the inputs of the modules ``names`` (a module called twice per forward counts both calls)."""
    modules = dict(model.named_modules())
    sums = {}
    for n in names:
        w = modules[n].weight
        size = w[0].numel()
        sums[n] = torch.zeros((size,) if diagonal else (size, size), dtype=torch.float64, device=w.device)
    counts = dict.fromkeys(names, 0)

    def hook(name):
        def fn(module, args):
            x = layer_inputs(module, args[0].detach(), name).to(torch.float64)
            if diagonal:
                sums[name] += (x * x).sum(0)
            else:
                sums[name].addmm_(x.T, x)
            counts[name] += x.shape[0]
        return fn

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    was = model.training
    model.eval()
    try:
        bar, seen = tqdm(loader, desc="calibration", leave=False, disable=not progress), 0
        for b, batch in enumerate(bar):
            if max_batches is not None and b >= max_batches:
                break
            x = input_tensor(batch, "calibration_loader")
            model(x)
            seen += int(x.shape[0]) if x.dim() else 1
            bar.set_postfix(inputs=seen, layers=len(names))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return HessianSums({n: s.cpu().numpy() for n, s in sums.items()}, counts, diagonal)


def _shard_sums(model, loader, names, max_batches, diagonal) -> HessianSums:
    return hessian_sums(model, loader, names, max_batches=max_batches, diagonal=diagonal)


def layer_hessians(model: nn.Module, calibration_loader=None, layers=None, *, shards=None, n_jobs: int = 1,
                   backend: str = "loky", max_batches: int | None = None, progress: bool = False,
                   diagonal: bool = False) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """H = X X^T / N of every selected layer's input, streamed over the calibration batches in float64.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode (its mode is restored after).
    calibration_loader : iterable
        Batches ``(inputs, ...)`` or input tensors; labels are not used.
    layers : list of str, optional
        See :func:`rcprune.torch.retention_layers.retention_layers`.
    shards : list of iterables, optional
        Instead of ``calibration_loader``: loaders whose sums are taken apart and merged (in this order);
        ``max_batches`` applies to each. With ``n_jobs`` other than 1 each shard is summed by a joblib
        worker on ``backend`` (the model and the shard's loader are pickled to it: give loaders that pickle,
        e.g. lists of tensors or DataLoaders over picklable datasets).
    n_jobs, backend :
        See :func:`rcprune.parallel.map_layers`; only with ``shards``.
    diagonal : bool
        Accumulate diag(H) only (O(n) memory per layer).

    Returns
    -------
    (hessians, counts)
        Undamped n x n float64 arrays (length-n diagonals with ``diagonal=True``) and the number N of input
        vectors per layer.
    """
    names, _ = retention_layers(model, layers)
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    if (calibration_loader is None) == (shards is None):
        raise InvalidInstanceError("give calibration_loader or shards= (a list of loaders), exactly one")
    if shards is None:
        check_loader(calibration_loader, "calibration_loader")
        if n_jobs != 1:
            raise InvalidInstanceError(f"n_jobs={n_jobs!r} needs shards= (one loader per worker): one loader is "
                                       "read in one pass")
        return hessian_sums(model, calibration_loader, names, max_batches=max_batches, progress=progress,
                            diagonal=diagonal).hessians()
    if not isinstance(shards, (list, tuple)) or not shards:
        raise InvalidInstanceError(f"shards must be a non-empty list of loaders, got {type(shards).__name__}")
    for i, shard in enumerate(shards):
        check_loader(shard, f"shards[{i}]")
    parts = map_layers(_shard_sums, [(str(i), (model, shard, names, max_batches, diagonal))
                                     for i, shard in enumerate(shards)],
                       n_jobs=n_jobs, backend=backend, progress=progress, desc="calibration shards",
                       what="calibration shard")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total.hessians()
