"""Certified optimality gaps on trained layers: every conv / linear weight of the demo's digits ResNet.

Per layer (scores ``|w|`` of ``weight.view(C_out, -1)``) and sparsity: the best cost of the greedy pair
(and of local annealing started from it), the best proven lower bound with that incumbent
(:func:`rcprune.certify.lower_bound`, ``method="best"``) and the certified gap ``(cost - bound) / cost``.
Costs, bounds and gaps come from the same run; timings are wall-clock on whatever machine runs it.

>>> rows = [{"sparsity": 0.9, "gap": 0.01, "bound_s": 0.5}, {"sparsity": 0.9, "gap": 0.03, "bound_s": 2.0}]
>>> summarize_bounds(rows)[0]
'sparsity 0.9: median certified gap 2.00% (max 3.00%) over 2 layers, bound time median 1.25 s, max 2.00 s'
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch.nn as nn

from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError, check_real_option

from rcprune.bench.trained_retention import trained_digits_resnet

__all__ = ["bench_trained_bounds", "summarize_bounds", "BOUND_COLUMNS", "DEFAULT_SOLVERS"]

DEFAULT_SOLVERS = ("greedy-row-column", "greedy-column-row")
BOUND_COLUMNS = ["layer", "m", "n", "sparsity", "solver", "cost", "lower_bound", "gap", "bound_s", "solve_s",
                 "refined", "cpsat_closed"]


def layer_instances(model: nn.Module, sparsity: float) -> list[tuple[str, Instance]]:
    """``(name, Instance(|weight.view(C_out, -1)|, sparsity))`` for every conv and linear of ``model``."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach()
            scores = w.reshape(w.shape[0], -1).abs().double().cpu().numpy()
            out.append((name, Instance(scores, sparsity=sparsity, name=name)))
    return out


def _layer_row(inst: Instance, solvers, annealing_time: float, bound_time: float, seed: int,
               cpsat_max_entries: int | None) -> dict:
    from rcprune.certify import lower_bound
    from rcprune.solve import solve

    start = time.perf_counter()
    best = min((solve(inst, method=m, seed=seed) for m in solvers), key=lambda r: r.cost)
    if annealing_time > 0:
        sa = solve(inst, method="annealing", seed=seed, time_limit=annealing_time, start=best.solution)
        best = sa if sa.cost < best.cost else best
    solve_s = time.perf_counter() - start
    if cpsat_max_entries is None:
        b = lower_bound(inst, "best", time_limit=bound_time, incumbent=best)
        surrogate = None
    else:  # "best" with CP-SAT per shape on larger matrices: shapewise, never below the surrogate
        from rcprune.bounds.shapewise import shapewise_bound
        from rcprune.solvers.matrix.exact_shapes import ExactShapes

        b = shapewise_bound(inst, best.cost, time_limit=bound_time, seed=seed, exact=ExactShapes,
                            cpsat_max_entries=cpsat_max_entries)
        surrogate = lower_bound(inst, "surrogate").bound
    bound = b.bound if surrogate is None else max(b.bound, surrogate)
    gap = (best.cost - bound) / best.cost if best.cost > 0 else 0.0
    runs = b.info.get("cpsat", [])
    return {"m": inst.m, "n": inst.n, "solver": best.method, "cost": best.cost,
            "lower_bound": bound, "gap": gap if gap > 1e-12 else 0.0,  # float noise of a proven optimum: 0
            "bound_s": b.runtime, "solve_s": solve_s, "refined": len(b.info.get("refined", [])),
            "cpsat_runs": len(runs), "cpsat_closed": sum(r["closed"] for r in runs),
            "cpsat_s": sum(r["seconds"] for r in runs), "best_known": b.info.get("incumbent", best.cost)}


def bench_trained_bounds(cache: str | Path = "rcprune-demo", *, depth: int = 20, width: int = 16, size: int = 8,
                         train_epochs: int = 15, seed: int = 0, sparsities=(0.9, 0.93), solvers=DEFAULT_SOLVERS,
                         annealing_time: float = 1.0, bound_time: float = 10.0,
                         cpsat_max_entries: int | None = None, progress: bool = False, log=print) -> list[dict]:
    """Certified gap of the best solver on every conv / linear layer of the trained digits ResNet.

    Parameters
    ----------
    cache : path
        Folder of the demo's cached dense weights; a model of the same config is trained there if missing
        (:func:`~rcprune.bench.trained_retention.trained_digits_resnet`).
    sparsities :
        Pruned fractions of each layer's weights.
    solvers :
        Methods of :func:`rcprune.solve` run to completion; the cheapest gives the incumbent.
    annealing_time : float
        Seconds of local annealing started from the best of ``solvers`` (0: none).
    bound_time : float
        Seconds of refinement for the bound of each layer and sparsity.
    cpsat_max_entries : int, optional
        Use CP-SAT per shape after the Lagrangian bound on layers of up to this many weights
        (:func:`~rcprune.bounds.shapewise.shapewise_bound`); default: ``lower_bound``'s own setting.

    Returns
    -------
    list of dict
        One per layer and sparsity: layer, m, n, sparsity, solver (the best one), cost, lower_bound,
        gap = (cost - lower_bound) / cost, bound_s, solve_s, refined (shapes refined), cpsat_runs,
        cpsat_closed, cpsat_s, best_known (the bound's final incumbent, which exact per-shape solves may
        have improved), model, cached.
    """
    for sp in sparsities:
        check_real_option(sp, "sparsity", 0.0, 1.0)
    if not solvers:
        raise InvalidInstanceError("solvers must name at least one method")
    annealing_time = check_real_option(annealing_time, "annealing_time") if annealing_time else 0.0
    bound_time = check_real_option(bound_time, "bound_time")
    model, info = trained_digits_resnet(cache, depth=depth, width=width, size=size, train_epochs=train_epochs,
                                        seed=seed, progress=progress, log=log)
    rows = []
    for sp in sparsities:
        for name, inst in layer_instances(model, sp):
            row = {"layer": name, "sparsity": float(sp),
                   **_layer_row(inst, solvers, annealing_time, bound_time, seed, cpsat_max_entries),
                   "model": info["model"], "cached": info["cached"]}
            rows.append(row)
            log(f"{name} {inst.m}x{inst.n} s={sp}: cost {row['cost']:.6g} ({row['solver']}), bound "
                f"{row['lower_bound']:.6g}, gap {row['gap']:.2%} in {row['bound_s']:.2f} s")
    return rows


def summarize_bounds(rows: list[dict]) -> list[str]:
    """One line per sparsity: median and max certified gap, median and max bound time."""
    lines = []
    for sp in dict.fromkeys(r["sparsity"] for r in rows):
        gaps = [r["gap"] for r in rows if r["sparsity"] == sp]
        secs = [r["bound_s"] for r in rows if r["sparsity"] == sp]
        lines.append(f"sparsity {sp}: median certified gap {float(np.median(gaps)):.2%} (max {max(gaps):.2%}) "
                     f"over {len(gaps)} layers, bound time median {float(np.median(secs)):.2f} s, "
                     f"max {max(secs):.2f} s")
    return lines
