"""Layer-wise benchmark of weight selection under the compensated objective: every conv and linear layer
of the demo's trained digits ResNet, H = X X^T / N from calibration images (1% damping), per-row budgets
at several sparsities; every method's post-refit error as a ratio to OBC's on the same layer in the same
run (OBC: exact OBS per row, Frantar & Alistarh 2022, the anchor for weight selection).

``masked-greedy`` is rcprune's earlier proxy: the greedy mask of the error *before* the refit, scored
here after the refit, as every other mask is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from rcprune.retention.model import RetentionInstance

__all__ = ["bench_layerwise", "summarize_layerwise", "LAYERWISE_COLUMNS", "DEFAULT_METHODS"]

DEFAULT_METHODS = ("magnitude", "masked-greedy", "obc", "compensated-swap", "compensated-tabu")
ANCHOR = "obc"
LAYERWISE_COLUMNS = ["layer", "m", "n", "sparsity", "method", "error", "vs_obc", "relative_error", "runtime",
                     "time_vs_obc"]


def _solve(inst: RetentionInstance, method: str, seed: int, time_limit: float | None):
    from rcprune.solve import solve

    if method != "masked-greedy":
        res = solve(inst, method=method, seed=seed, time_limit=time_limit)
        return res.cost, res.runtime
    masked = RetentionInstance(inst.weights, inst.hessian, k=inst.k, scope=inst.scope, objective="masked", damping=0)
    res = solve(masked, method="retention-greedy", seed=seed, time_limit=time_limit)
    return inst.evaluate(res.solution).cost, res.runtime


def bench_layerwise(cache: str | Path = "rcprune-demo", *, sparsities=(0.5, 0.7, 0.9), methods=DEFAULT_METHODS,
                    calibration: int = 512, damping: float = 0.01, seed: int = 0, time_limit: float | None = 600.0,
                    progress: bool = False, log=print) -> list[dict]:
    """Post-refit error of each method on each layer of the trained digits ResNet-20 (the demo's model,
    trained and cached in ``cache`` if missing), at each sparsity (per-row budget).

    Returns one dict per layer, sparsity and method: layer, m, n, k, sparsity, method, error (E after the
    refit), vs_obc (error / OBC's error on that layer and sparsity), relative_error (error / w^T H w),
    runtime, time_vs_obc, samples, model.
    """
    from rcprune.bench.trained_retention import trained_digits_resnet
    from rcprune.torch.data import digits_tensors
    from rcprune.torch.retention import layer_hessians, retention_layers

    if ANCHOR not in methods:
        raise ValueError(f"methods must include the anchor {ANCHOR!r}")
    model, info = trained_digits_resnet(cache, seed=seed, progress=progress, log=log)
    xtr = digits_tensors(8)[0][:calibration]
    names, _ = retention_layers(model)
    hessians, counts = layer_hessians(model, [xtr[i:i + 128] for i in range(0, len(xtr), 128)], names,
                                      progress=progress)
    rows = []
    for name in names:
        module = model.get_submodule(name)
        w = module.weight.detach().reshape(module.weight.shape[0], -1).double().numpy()
        for sparsity in sparsities:
            inst = RetentionInstance(w, hessians[name], sparsity=sparsity, damping=damping, name=name)
            energy = float(np.einsum("ij,jk,ik->", inst.weights, inst.hessian, inst.weights))
            found = {m: _solve(inst, m, seed, time_limit) for m in methods}
            anchor_error, anchor_time = found[ANCHOR]
            for method, (error, runtime) in found.items():
                rows.append({
                    "layer": name, "m": inst.m, "n": inst.n, "k": inst.k, "sparsity": sparsity, "method": method,
                    "error": error, "vs_obc": error / anchor_error if anchor_error > 0 else float(error == 0) or np.inf,
                    "relative_error": error / energy if energy > 0 else 0.0, "runtime": runtime,
                    "time_vs_obc": runtime / anchor_time if anchor_time > 0 else None,
                    "samples": counts[name], "model": info["model"],
                })
        log(f"{name} ({w.shape[0]} x {w.shape[1]}): " + ", ".join(
            f"{r['method']}@{r['sparsity']:g} {r['vs_obc']:.3f}" for r in rows if r["layer"] == name
            and r["method"] != ANCHOR))
    return rows


def summarize_layerwise(rows: list[dict]) -> list[str]:
    """Per sparsity and method: the median error ratio to OBC, its range, on how many layers the method is
    at or below OBC, and the total time ratio."""
    lines = []
    for sparsity in dict.fromkeys(r["sparsity"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["sparsity"] == sparsity and r["method"] == method]
            ratios = np.array([r["vs_obc"] for r in sel])
            anchor = sum(r["runtime"] for r in rows if r["sparsity"] == sparsity and r["method"] == ANCHOR)
            lines.append(f"sparsity {sparsity:g}, {method}: error / OBC median {np.median(ratios):.3f} "
                         f"(min {ratios.min():.3f}, max {ratios.max():.3f}), <= OBC on "
                         f"{int(np.sum(ratios <= 1 + 1e-9))}/{ratios.size} layers, time "
                         f"{sum(r['runtime'] for r in sel):.2f} s = {sum(r['runtime'] for r in sel) / anchor:.2f}x OBC's")
    return lines
