"""Benchmark of small-weight retention on real layers: the conv weights of the demo's digits ResNet
(trained, or loaded from the demo's cache) with H from the digits training images flowing through it.

Per conv layer and method: the reconstruction error E at the given sparsity (per-row budget), its
improvement over magnitude pruning, the error after a least-squares refit and the share of kept weights
that magnitude pruning would have dropped ("retained small").
"""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from rcprune.retention.model import RetentionInstance, refit_error

from rcprune.torch.retention import layer_hessians

__all__ = ["bench_trained_retention", "summarize_trained", "trained_digits_resnet", "TRAINED_COLUMNS",
           "DEFAULT_METHODS"]

DEFAULT_METHODS = ("magnitude", "diagonal", "retention-greedy", "retention-annealing", "retention-exact")
TRAINED_COLUMNS = ["layer", "n", "k", "method", "cost", "improvement", "relative_error", "refit_cost",
                   "retained_small_share", "status", "runtime"]


def trained_digits_resnet(cache: str | Path = "rcprune-demo", *, depth: int = 20, width: int = 16, size: int = 8,
                          train_epochs: int = 15, seed: int = 0, progress: bool = False,
                          log=print) -> tuple[nn.Module, dict]:
    """The demo's dense digits ResNet: loaded from ``cache`` when a model of the same config is there,
    else trained as the demo does and cached. Returns ``(model in eval mode, {"cached", "train_seconds",
    "model": a name of the config})``."""
    from rcprune.torch.data import digits_loaders
    from rcprune.bench.demo import _dense_model   # the demo's training and cache, shared on purpose

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    cfg = {"depth": depth, "width": width, "size": size, "train_epochs": train_epochs, "seed": seed,
           "progress": progress}
    train, test = digits_loaders(size, seed=seed)
    model, info = _dense_model(cache, cfg, train, test, log)
    return model, {**info, "model": f"resnet{depth}-w{width}-digits{size}-e{train_epochs}-seed{seed}"}


def bench_trained_retention(cache: str | Path = "rcprune-demo", *, depth: int = 20, width: int = 16, size: int = 8,
                            train_epochs: int = 15, seed: int = 0, sparsity: float = 0.9, damping: float = 0.01,
                            methods=DEFAULT_METHODS, time_limit: float | None = 60.0, exact_max_n: int = 20,
                            refit: bool = True, progress: bool = False, log=print) -> list[dict]:
    """Reconstruction error of each method on each conv layer of the trained digits ResNet.

    Parameters
    ----------
    cache : path
        Folder of the demo's cached dense weights (``rcprune demo --out``): a model trained with the same
        depth, width, size, epochs and seed is loaded from there, or trained (as the demo does) and cached.
    sparsity : float
        Pruned fraction per row (k = round((1 - sparsity) n) kept in every row).
    methods :
        Retention methods of :func:`rcprune.solve`; ``retention-exact`` only runs where n <= ``exact_max_n``.
    time_limit : float
        Seconds per method and layer.

    Returns
    -------
    list of dict
        One per layer and method: layer, m, n, k, method, cost (E), magnitude_cost, improvement
        (1 - E / E_magnitude), relative_error (E / w^T H w, the share of the layer's output energy lost),
        refit_cost, retained_small and retained_small_share (of the kept weights), status, runtime, and the
        model's config. H is from all digits training images (unshuffled), damped by ``damping``.
    """
    from rcprune.solve import solve

    from rcprune.torch.data import digits_tensors

    model, info = trained_digits_resnet(cache, depth=depth, width=width, size=size, train_epochs=train_epochs,
                                        seed=seed, progress=progress, log=log)
    xtr = digits_tensors(size)[0]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    hessians, counts = layer_hessians(model, [xtr[i:i + 256] for i in range(0, len(xtr), 256)], convs,
                                      progress=progress)
    rows = []
    for name in convs:
        w = model.get_submodule(name).weight.detach()
        inst = RetentionInstance(w.reshape(w.shape[0], -1).double().numpy(), hessians[name], sparsity=sparsity,
                                 objective="masked", damping=damping, name=name)
        energy = float((inst.weights @ inst.hessian * inst.weights).sum())
        for method in methods:
            if method == "retention-exact" and inst.n > exact_max_n:
                continue
            res = solve(inst, method=method, seed=seed, time_limit=time_limit)
            rows.append({
                "layer": name, "m": inst.m, "n": inst.n, "k": inst.k, "samples": counts[name], "method": method,
                "cost": res.cost, "magnitude_cost": res.evaluation.magnitude_cost, "improvement": res.evaluation.improvement,
                "relative_error": res.cost / energy if energy > 0 else 0.0,
                "refit_cost": refit_error(inst, res.solution) if refit else None,
                "retained_small": res.evaluation.retained_small,
                "retained_small_share": res.evaluation.retained_small / max(1, res.kept_count), "status": res.status,
                "runtime": res.runtime, "model": info["model"],
                "cached": info["cached"],
            })
        log(f"{name}: n={inst.n}, k={inst.k}, " + ", ".join(
            f"{r['method']} {r['improvement']:+.1%}" for r in rows if r["layer"] == name))
    return rows


def summarize_trained(rows: list[dict], method: str = "retention-annealing", target: float = 0.2) -> list[str]:
    """One line per method: on how many conv layers it beats magnitude by at least ``target``, and the
    median improvement."""
    import numpy as np

    lines = []
    for m in dict.fromkeys(r["method"] for r in rows):
        imp = [r["improvement"] for r in rows if r["method"] == m]
        hits = sum(v >= target for v in imp)
        mark = " (target)" if m == method else ""
        lines.append(f"{m}{mark}: >= {target:.0%} lower error than magnitude on {hits}/{len(imp)} conv layers, "
                     f"median improvement {float(np.median(imp)):.1%}")
    return lines
