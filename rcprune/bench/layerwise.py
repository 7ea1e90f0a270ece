"""Layer-wise benchmark of the compensated objective (the layer's output error after the least-squares refit)
on every conv and linear layer of the demo's trained digits ResNet, H = X X^T / N from calibration images
(1% damping), at several sparsities. Two problems, each against its anchor, measured on the same layer in
the same run:

* weight selection (per-row budgets): every method's error / OBC's (exact OBS per row, Frantar & Alistarh
  2022); ``sparsegpt`` is the fast anchor for large layers (its mask, refit exactly); ``masked-greedy`` is
  rcprune's earlier proxy, the greedy mask of the error *before* the refit;
* RC (rows x columns, |R| |C| <= K): error / structured-OBS column elimination's; ``rc-magnitude`` is
  data-free RC (greedy on |w|).

Every mask is scored after the refit. With ``bounds`` (the default) two more rows per layer say how far
below the anchor any method could go: ``perspective-bound`` (a proven lower bound on the least error,
:mod:`rcprune.bounds.perspective`) and ``exact`` (the optimum, proven by enumeration): for weights where a
row has at most 65,536 supports of its budget (``compensated-exact``: n <= 16, or n = 32 at 90%), for RC on
layers of at most 16 columns (``compensated-rc-exact``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rcprune.compensation import quadratic_forms
from rcprune.retention.model import RetentionInstance

__all__ = ["bench_layerwise", "summarize_layerwise", "LAYERWISE_COLUMNS", "DEFAULT_METHODS"]

DEFAULT_METHODS = ("magnitude", "masked-greedy", "sparsegpt", "obc", "compensated-swap", "compensated-tabu",
                   "compensated-annealing")
RC_METHODS = ("rc-magnitude", "structured-obs", "compensated-rc-swap", "compensated-rc-tabu")
EXACT_N = 16       # columns up to which the RC optimum is enumerated (compensated-rc-exact's limit)
EXACT_METHODS = {"weights": "compensated-exact", "rc": "compensated-rc-exact"}
ANCHOR, RC_ANCHOR = "obc", "structured-obs"
LAYERWISE_COLUMNS = ["layer", "m", "n", "sparsity", "problem", "method", "error", "vs_anchor", "relative_error",
                     "runtime", "time_vs_anchor"]


def _solve(inst, method: str, seed: int, time_limit: float | None):
    from rcprune.matrix.model import Instance
    from rcprune.solve import solve

    if method == "rc-magnitude":
        res = solve(Instance.from_layer(inst.weights, budget=inst.budget), method="greedy-row-column")
        return inst.evaluate(res.solution).cost, res.runtime
    if method != "masked-greedy":
        res = solve(inst, method=method, seed=seed, time_limit=time_limit)
        return res.cost, res.runtime
    masked = RetentionInstance(inst.weights, inst.hessian, k=inst.k, scope=inst.scope, objective="masked", damping=0)
    res = solve(masked, method="retention-greedy", seed=seed, time_limit=time_limit)
    return inst.evaluate(res.solution).cost, res.runtime


def _lower_bound(inst, time_limit):
    from rcprune.bounds.perspective import perspective_bound

    res = perspective_bound(inst, time_limit=time_limit)
    return res.bound, res.runtime


def _enumerable(inst, problem: str) -> bool:
    """Whether the exact method proves ``inst``'s optimum: weights under a row budget while C(n, k) is
    small (:func:`rcprune.solvers.retention.compensated_exact.enumerable`), RC up to :data:`EXACT_N` columns."""
    from rcprune.solvers.retention.compensated_exact import enumerable

    return enumerable(inst) if problem == "weights" else inst.n <= EXACT_N


def _rows(inst, methods, anchor, problem, energy, seed, time_limit, base, bounds=False) -> list[dict]:
    found = {m: _solve(inst, m, seed, time_limit) for m in methods}
    if bounds:
        found["perspective-bound"] = _lower_bound(inst, time_limit)
        if _enumerable(inst, problem):
            found["exact"] = _solve(inst, EXACT_METHODS[problem], seed, None)
    anchor_error, anchor_time = found[anchor]
    return [base | {"problem": problem, "method": method, "error": error, "anchor": anchor,
                    "vs_anchor": error / anchor_error if anchor_error > 0 else (1.0 if error == 0 else np.inf),
                    "relative_error": error / energy if energy > 0 else 0.0, "runtime": runtime,
                    "time_vs_anchor": runtime / anchor_time if anchor_time > 0 else None}
            for method, (error, runtime) in found.items()]


def bench_layerwise(cache: str | Path = "rcprune-demo", *, sparsities=(0.5, 0.7, 0.9), methods=DEFAULT_METHODS,
                    rc_methods=RC_METHODS,
                    calibration: int = 512, damping: float = 0.01, seed: int = 0, time_limit: float | None = 600.0,
                    depth: int = 20, width: int = 16, train_epochs: int = 15, progress: bool = False,
                    bounds: bool = True, log=print) -> list[dict]:
    """Post-refit error of each method on each layer of the trained digits ResNet-20 (the demo's model,
    trained and cached in ``cache`` if missing), at each sparsity (per-row budget).

    Returns one dict per layer, sparsity, problem and method: layer, m, n, sparsity, problem ("weights" or
    "rc"), method, error (after the refit), anchor, vs_anchor (error / the anchor's error on that layer,
    sparsity and problem), relative_error (error / sum_i w_i^T H w_i), runtime, time_vs_anchor, samples,
    model. ``bounds``: also the rows ``perspective-bound`` (its "error" is the proven lower bound) and, where
    the optimum can be enumerated (:func:`_enumerable`), ``exact`` (the proven optimum).
    """
    from rcprune.matrix.model import Instance

    from rcprune.bench.trained_retention import trained_digits_resnet
    from rcprune.torch.data import digits_tensors
    from rcprune.torch.retention import layer_hessians, retention_layers

    if ANCHOR not in methods or (rc_methods and RC_ANCHOR not in rc_methods):
        raise ValueError(f"methods must include the anchors {ANCHOR!r} and (for RC) {RC_ANCHOR!r}")
    model, info = trained_digits_resnet(cache, depth=depth, width=width, train_epochs=train_epochs, seed=seed,
                                        progress=progress, log=log)
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
            energy = float(quadratic_forms(inst.weights, inst.hessian).sum())
            base = {"layer": name, "m": inst.m, "n": inst.n, "sparsity": sparsity, "samples": counts[name],
                    "model": info["model"]}
            rows += _rows(inst, methods, ANCHOR, "weights", energy, seed, time_limit, base, bounds)
            if rc_methods:
                rc = Instance.from_layer(w, hessian=hessians[name], sparsity=sparsity, damping=damping, name=name)
                rows += _rows(rc, rc_methods, RC_ANCHOR, "rc", energy, seed, time_limit, base, bounds)
        log(f"{name} ({w.shape[0]} x {w.shape[1]}): " + ", ".join(
            f"{r['method']}@{r['sparsity']:g} {r['vs_anchor']:.3f}" for r in rows if r["layer"] == name
            and r["method"] not in (ANCHOR, RC_ANCHOR)))
    return rows


def summarize_layerwise(rows: list[dict]) -> list[str]:
    """Per problem, sparsity and method: the median error ratio to the anchor, its range, on how many layers
    the method is at or below the anchor, and the total time ratio."""
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for sparsity in dict.fromkeys(r["sparsity"] for r in rows):
            sel_all = [r for r in rows if r["problem"] == problem and r["sparsity"] == sparsity]
            anchor = sel_all[0]["anchor"]
            anchor_time = sum(r["runtime"] for r in sel_all if r["method"] == anchor)
            for method in dict.fromkeys(r["method"] for r in sel_all):
                sel = [r for r in sel_all if r["method"] == method]
                ratios = np.array([r["vs_anchor"] for r in sel])
                seconds = sum(r["runtime"] for r in sel)
                lines.append(
                    f"{problem} {sparsity:g}, {method}: error / {anchor} median {np.median(ratios):.3f} (min "
                    f"{ratios.min():.3f}, max {ratios.max():.3f}), <= {anchor} on {int(np.sum(ratios <= 1 + 1e-9))}/"
                    f"{ratios.size} layers, time {seconds:.2f} s = {seconds / max(anchor_time, 1e-9):.2f}x {anchor}'s")
    return lines
