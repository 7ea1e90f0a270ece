"""CPU latency: median wall time of a forward pass, models measured round-robin in the same run (so
machine load hits them alike), and where that time goes by kind of op. The ResNet-18 compaction
benchmark built on them is :mod:`rcprune.bench.latency` (``rcprune bench latency``).

>>> import torch
>>> t = measure_latency({"id": torch.nn.Identity()}, torch.zeros(2, 3), repeats=3)
>>> sorted(t) == ["id"] and t["id"] >= 0
True
"""
from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

__all__ = ["measure_latency", "latency_breakdown", "BREAKDOWN_CATEGORIES", "ChannelsLast", "fused_channels_last",
           "time_forms", "torch_threads"]


def _warm_up(models: Mapping[str, nn.Module], x: torch.Tensor, warmup: int) -> None:
    """Eval mode, and ``warmup`` untimed forwards of each model (allocator, oneDNN primitive caches)."""
    for m in models.values():
        m.eval()
        for _ in range(warmup):
            m(x)


@torch.inference_mode()
def measure_latency(models: Mapping[str, nn.Module], x: torch.Tensor, *, repeats: int = 10,
                    warmup: int = 2) -> dict[str, float]:
    """Median milliseconds per forward of each model on ``x`` (eval mode), interleaved: ``warmup`` untimed
    forwards of each model, then ``repeats`` rounds of one timed forward of every model in turn, so
    machine load hits them alike. On a CUDA ``x`` every forward is timed between two device synchronizations.
    The models are left in eval mode."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    _warm_up(models, x, warmup)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            sync()
            t = time.perf_counter()
            m(x)
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}


@contextmanager
def torch_threads(n: int):
    """Torch intra-op threads set to ``n`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ChannelsLast(nn.Module):
    """``model`` on a channels-last copy of its input (the copy is part of the measured time)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def fused_channels_last(model: nn.Module) -> nn.Module:
    """An eval copy of ``model`` with BatchNorm fused into the convs (``torch.fx`` fuse) in channels-last."""
    from torch.fx.experimental.optimization import fuse

    work = copy.deepcopy(model).eval()
    try:
        work = fuse(work)
    except Exception:  # noqa: BLE001 -- not traceable by fx: channels-last alone
        pass
    return ChannelsLast(work.to(memory_format=torch.channels_last)).eval()


def time_forms(models: Mapping[str, nn.Module], x: torch.Tensor, repeats: int, threads: int = 1) -> dict[str, dict]:
    """Both inference forms of every model (as it is; BatchNorm-fused in channels-last) timed in one
    interleaved run on ``threads`` threads: ``{key: {"as_is_ms", "fused_cl_ms", "ms" (the faster), "form"}}``.
    How a user deploys a model is the faster of the two, so speedups compare those."""
    flat = {}
    for key, m in models.items():
        flat[f"{key}|as-is"] = m.eval()
        flat[f"{key}|fused-cl"] = fused_channels_last(m)
    with torch_threads(threads), torch.inference_mode():
        ms = measure_latency(flat, x, repeats=repeats)
    out = {}
    for key in models:
        a, f = ms[f"{key}|as-is"], ms[f"{key}|fused-cl"]
        out[key] = {"as_is_ms": a, "fused_cl_ms": f, "ms": min(a, f), "form": "as-is" if a <= f else "fused-cl"}
    return out


BREAKDOWN_CATEGORIES = ("conv/gemm", "batchnorm", "add/relu", "gather/scatter", "other")


def _category(op: str) -> str:
    name = op.removeprefix("aten::")
    if "convolution" in name or name in ("addmm", "mm", "bmm", "matmul", "linear"):
        return "conv/gemm"
    if "batch_norm" in name:
        return "batchnorm"
    if name.rstrip("_") in ("add", "relu", "clamp_min", "threshold"):
        return "add/relu"
    if name.rstrip("_") in ("index_select", "index_add", "index_copy", "scatter", "scatter_add", "gather",
                            "constant_pad_nd", "fill", "copy", "cat", "zero"):
        return "gather/scatter"
    return "other"


@torch.inference_mode()
def latency_breakdown(models: Mapping[str, nn.Module], x: torch.Tensor, *, repeats: int = 10,
                      warmup: int = 2) -> dict[str, dict[str, float]]:
    """Where each model's forward time goes: profiled milliseconds per forward in each of
    :data:`BREAKDOWN_CATEGORIES` (the self CPU time of the aten ops, ``torch.profiler``), plus ``"total"``,
    their sum.

    One profiler session covers ``repeats`` rounds of one forward of every model in turn (interleaved,
    as :func:`measure_latency` does, so machine load hits them alike), each forward marked by a
    ``record_function`` range; a category's time is its median over the rounds. The profiler adds its
    own overhead, so the totals exceed :func:`measure_latency`'s times; the split is what it is for:
    which kind of op makes one model slower than another.

    >>> import torch
    >>> b = latency_breakdown({"conv": torch.nn.Conv2d(3, 4, 3)}, torch.zeros(2, 3, 8, 8), repeats=2)
    >>> b["conv"]["conv/gemm"] > 0 and set(b["conv"]) == set(BREAKDOWN_CATEGORIES) | {"total"}
    True
    """
    keys = list(models)
    _warm_up(models, x, warmup)
    marker = "rcprune.latency_breakdown."
    # kineto reads this when the first profiler starts: without it a CPU-only machine gets an "ERROR ...
    # gpuGetDeviceCount failed" line on stderr, which reads like a failure of the demo. A user's own
    # setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            for i, key in enumerate(keys):
                with torch.profiler.record_function(f"{marker}{i}"):
                    models[key](x)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
    for event in prof.events():
        if not event.name.startswith(marker):
            continue
        split = dict.fromkeys(BREAKDOWN_CATEGORIES, 0.0)
        stack = list(event.cpu_children)
        while stack:
            op = stack.pop()
            split[_category(op.name)] += op.self_cpu_time_total / 1000.0
            stack.extend(op.cpu_children)
        samples[keys[int(event.name[len(marker):])]].append(split)
    out: dict[str, dict[str, float]] = {}
    for key, splits in samples.items():
        out[key] = {c: float(np.median([s[c] for s in splits])) for c in BREAKDOWN_CATEGORIES}
        out[key]["total"] = sum(out[key].values())
    return out
