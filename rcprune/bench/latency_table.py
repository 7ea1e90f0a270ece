"""How well a measured latency table predicts compacted models: for a CIFAR ResNet-20 (28x28, one channel)
and a torchvision ResNet-18 (64x64), build the table, solve at several latency budgets with network-greedy,
compact each solution and time the compacted models together (round-robin, one run); report predicted vs
measured milliseconds. Random weights: latency does not depend on them. Needs the ``torch`` extra.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch

from rcprune.files import atomic_write_bytes
from rcprune.network.model import NetworkSolution
from rcprune.solve import solve
from rcprune.text import format_table
from rcprune.torch.compact import compact
from rcprune.torch.extract import extract
from rcprune.torch.latency import measure_latency
from rcprune.torch.latency_table import latency_table
from rcprune.torch.masking import apply, restore
from rcprune.torch.models import cifar_resnet

__all__ = ["run_table_check", "check_model", "CHECK_COLUMNS"]

CHECK_COLUMNS = ["model", "density", "budget_ms", "predicted_ms", "measured_ms", "ratio", "mac_ratio"]
DENSITIES = (0.3, 0.5, 0.7, 0.85)


def _models(seed: int) -> dict:
    import torchvision

    torch.manual_seed(seed)
    return {"resnet20-28x28-b64": (cifar_resnet(20, 16, in_channels=1, num_classes=10, seed=seed).eval(),
                                   torch.randn(64, 1, 28, 28)),
            "resnet18-64x64-b16": (torchvision.models.resnet18(num_classes=10).eval(), torch.randn(16, 3, 64, 64))}


def check_model(name: str, model: torch.nn.Module, x: torch.Tensor, *, densities: Sequence[float] = DENSITIES,
                repeats: int = 15, table_repeats: int = 5, epilogue: bool = True, min_density: float = 0.0,
                seed: int = 0) -> tuple[list[dict], dict]:
    """Rows of predicted vs measured ms of ``model`` compacted at each latency density, and the table's
    facts (build time, fixed, dense). Cost: one table build, ``len(densities)`` solves and compactions,
    ``repeats`` interleaved rounds of every compacted model."""
    ext = extract(model, x[:1], min_density=min_density)
    t0 = time.perf_counter()
    table = latency_table(model, x, extraction=ext, repeats=table_repeats, epilogue=epilogue, cache=False)
    build_s = time.perf_counter() - t0
    measure = table.measure(ext)
    full = NetworkSolution.full(ext.instance)
    models = {"dense": compact(model, full, ext)[0]}
    rows = {"dense": {"model": name, "density": 1.0, "budget_ms": None, "predicted_ms": table.predict(ext, full),
                      "mac_ratio": 1.0}}
    for d in densities:
        inst = ext.instance.replace(measure=measure, density=d)
        sol = solve(inst, method="network-greedy", seed=seed).solution
        apply(model, sol, ext)
        key = f"d{d}"
        models[key], report = compact(model, sol, ext, partial="auto", example_inputs=x)
        restore(model)
        rows[key] = {"model": name, "density": d, "budget_ms": inst.budget + measure.fixed,
                     "predicted_ms": table.predict(inst, sol), "mac_ratio": report.mac_ratio}
    ms = measure_latency(models, x, repeats=repeats)
    for key, row in rows.items():
        row["measured_ms"] = ms[key]
        row["ratio"] = row["predicted_ms"] / ms[key]
    facts = {"model": name, "build_s": build_s, "fixed_ms": table.fixed, "dense_ms": table.dense_ms,
             "epilogue": epilogue, "metadata": table.metadata}
    return list(rows.values()), facts


def run_table_check(out=None, *, seed: int = 0, densities: Sequence[float] = DENSITIES, repeats: int = 15,
                    epilogue: bool = True, threads: int | None = 1, models: Sequence[str] | None = None) -> dict:
    """:func:`check_model` on both models (or those named in ``models``); with ``out`` (a folder), writes
    ``latency_table_check.json`` and ``latency_table_check.md`` there. Returns ``{"rows": [...], "tables": [...]}``.

    ``threads`` sets torch's intra-op threads for the run (``None``: as they are). The default, 1, because on a
    shared machine a second thread that loses its core stalls every parallel region, and the timings then
    measure the neighbours' load rather than the model.
    """
    rows, tables = [], []
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for name, (model, x) in _models(seed).items():
            if models is not None and name not in models:
                continue
            r, facts = check_model(name, model, x, densities=densities, repeats=repeats, epilogue=epilogue, seed=seed)
            rows += r
            tables.append(facts)
    finally:
        torch.set_num_threads(before)
    result = {"rows": rows, "tables": tables}
    if out is not None:
        out = Path(out)
        atomic_write_bytes(out / "latency_table_check.json", json.dumps(result, indent=1).encode())
        facts = format_table([{k: v for k, v in t.items() if k != "metadata"} for t in tables])
        md = (f"# Latency table: predicted vs measured\n\n{tables[0]['metadata']['device']}, torch "
              f"{torch.__version__}, {tables[0]['metadata']['threads']} threads, epilogue={epilogue}\n\n"
              f"```\n{format_table(rows, CHECK_COLUMNS)}\n```\n\n```\n{facts}\n```\n")
        atomic_write_bytes(out / "latency_table_check.md", md.encode())
    return result
