"""``rcprune bench latency``: dense vs compacted torchvision ResNet-18 on the CPU (or a CUDA device,
``device=``), every model timed in the same run (:func:`rcprune.torch.latency.measure_latency`, round-robin), so the speedups are ratios measured
together. Needs the ``torch`` extra and torchvision.
"""
from __future__ import annotations

import copy

import torch

from rcprune.solve import solve
from rcprune.torch.compact import compact
from rcprune.torch.extract import extract
from rcprune.torch.latency import ChannelsLast, latency_breakdown, measure_latency
from rcprune.torch.masking import apply

__all__ = ["bench_resnet18", "BENCH_VARIANTS"]

BENCH_VARIANTS = ("auto", "auto-timed", "im2col", "conv")


def bench_resnet18(sparsity: float = 0.9, *, batch: int = 64, size: int = 112, method: str = "network-greedy",
                   repeats: int = 5, seed: int = 0, variants=BENCH_VARIANTS, weighting=None,
                   breakdown: bool = False, device: str = "cpu") -> list[dict]:
    """Dense vs compacted torchvision ResNet-18 (random weights, 10 classes) on ``device`` at ``batch``.

    Returns one row per model: latency (ms), speedup vs the dense model as torchvision builds it (NCHW),
    speedup vs the dense model in channels-last (``speedup_vs_cl``; the compact models run convolutions
    channels-last, so this isolates what pruning buys), MAC reduction, and ``speedup / mac_ratio`` (1: the
    time fell as much as the multiply-adds). Compaction variants (``partial`` of :func:`rcprune.torch.compact`):
    ``auto`` (cost model), ``auto-timed`` (each partial layer timed on its input at this batch),
    ``im2col`` and ``conv`` (partial channels as a conv with zeros). ``weighting`` goes to
    :func:`rcprune.torch.extract` (``None``: its default). ``breakdown=True`` adds each model's
    :func:`latency_breakdown` (profiled ms per forward by kind of op) under the category names.
    """
    import torchvision

    from rcprune.torch.latency_table import check_device

    dev = check_device(device)
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10).eval().to(dev)
    x = torch.randn(batch, 3, size, size).to(dev)
    ext = extract(model, x[:1], sparsity=sparsity, **({} if weighting is None else {"weighting": weighting}))
    res = solve(ext.instance, method=method, seed=seed)
    masked = apply(model, res.solution, ext)
    dense = torchvision.models.resnet18(num_classes=10).eval().to(dev)
    models = {"dense": dense, "dense-cl": ChannelsLast(copy.deepcopy(dense).to(memory_format=torch.channels_last))}
    reports = {}
    for variant in variants:
        options = {"partial": "auto", "example_inputs": x} if variant == "auto-timed" else {"partial": variant}
        models[f"rc-{variant}"], reports[f"rc-{variant}"] = compact(masked, res.solution, ext, **options)
    ms = measure_latency(models, x, repeats=repeats)
    split = latency_breakdown(models, x, repeats=repeats) if breakdown else {}
    rows = []
    for k, t in ms.items():
        rep = reports.get(k)
        mac_ratio = rep.mac_ratio if rep else 1.0
        speedup = ms["dense"] / t
        rows.append({"model": k, "sparsity": sparsity, "batch": batch, "input": size, "latency_ms": t,
                     "speedup": speedup, "speedup_vs_cl": ms["dense-cl"] / t, "mac_ratio": mac_ratio,
                     "speedup_over_mac_ratio": speedup / mac_ratio,
                     "macs": rep.macs_after if rep else None, "kept_weights": rep.weights_after if rep else None}
                    | split.get(k, {}))
    return rows


