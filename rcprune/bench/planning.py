"""How long a latency-budgeted prune takes to plan once its table is built: torchvision ResNet-50 (random
weights: structure only), the latency table built (or loaded from the cache) first and timed apart, then
per speedup and method the budgeted instance and the solve, timed together. Needs the ``torch`` extra.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

from rcprune.solve import solve
from rcprune.torch.extract import extract
from rcprune.torch.latency_table import latency_table
from rcprune.torch.pipeline import DEFAULT_FLOOR, budgeted_instance

__all__ = ["bench_planning", "PLANNING_COLUMNS"]

PLANNING_COLUMNS = ["model", "method", "speedup", "min_channels", "plan_s", "feasible", "predicted_ms", "target_ms"]


def bench_planning(model: str = "resnet50", *, size: int = 64, batch: int = 8, speedups: Sequence[float] = (1.5, 2.0, 3.0),
                   methods: Sequence[str] = ("network-greedy", "network-allocation", "network-annealing"),
                   options: dict | None = None, table_options: dict | None = None, cache_dir=None,
                   seed: int = 0, min_channels: float = DEFAULT_FLOOR) -> tuple[list[dict], dict]:
    """Rows of planning seconds (budgeted instance + solve) per method and speedup, and the table's facts
    (build seconds, dense ms). ``options``: per method, solver options (default: network-annealing with
    100,000 moves). ``table_options`` go to :func:`rcprune.torch.latency_table` (grid, repeats). The
    table is cached in ``cache_dir`` (default the rcprune cache), so a second run times the planning
    alone. ``min_channels``: the channel floor, by default prune's under a latency budget."""
    import torchvision

    torch.manual_seed(seed)
    net = getattr(torchvision.models, model)(num_classes=10).eval()
    x = torch.randn(batch, 3, size, size)
    ext = extract(net, x[:1])
    t = time.perf_counter()
    table = latency_table(net, x, extraction=ext, cache_dir=cache_dir, **(table_options or {}))
    facts = {"model": model, "input": [batch, 3, size, size], "table_s": time.perf_counter() - t,
             "dense_ms": table.dense_ms, "fixed_ms": table.fixed, "layers": ext.instance.n_layers,
             "device": table.metadata.get("device")}
    options = {"network-annealing": {"moves": 100_000}} if options is None else options
    rows = []
    for method in methods:
        for s in speedups:
            t = time.perf_counter()
            inst = budgeted_instance(ext, "latency", speedup=s, table=table, min_channels=min_channels)
            res = solve(inst, method=method, seed=seed, **options.get(method, {}))
            rows.append({"model": model, "method": method, "speedup": s, "plan_s": time.perf_counter() - t,
                         "feasible": res.feasible, "predicted_ms": inst.measure.fixed + res.evaluation.spend,
                         "target_ms": table.dense_ms / s, "min_channels": min_channels})
    return rows, facts
