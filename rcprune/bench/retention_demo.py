"""Demo rows for small-weight retention: unstructured magnitude vs retention vs retention + refit at the
same per-row budget on a trained model, accuracy zero-shot and after the same fine-tuning.

The rows have the keys of :func:`rcprune.bench.demo.format_markdown` (``sparsity``, ``method``,
``kept_weights``, ``macs``, ``acc_zero_shot``, ``acc_finetuned``, ``solve_seconds``, ``note``) plus the
layer errors of :func:`rcprune.torch.retention_prune`.
"""
from __future__ import annotations

import copy
import time

import torch.nn as nn

from rcprune.torch.finetune import evaluate_accuracy, finetune
from rcprune.torch.rcmask import keep_mask
from rcprune.torch.retention import retention_prune

__all__ = ["retention_demo_rows", "DEMO_VARIANTS"]

# label -> (method, refit); "magnitude" keeps the top-k |w| of every row (same layers, same budget)
DEMO_VARIANTS = {
    "magnitude-per-row": ("magnitude", False),
    "retention": (None, False),
    "retention+refit": (None, True),
}


def _kept_weights(model: nn.Module) -> int:
    """Kept conv / linear weights (mask entries where masked, every weight elsewhere)."""
    return sum(m.weight.numel() if keep_mask(m) is None else int(keep_mask(m).count_nonzero())
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def retention_demo_rows(model: nn.Module, loaders, sparsity: float = 0.9, epochs: int = 5, seed: int = 0, *,
                        method: str = "retention-annealing", calibration_batches: int = 4, layers=None,
                        damping: float = 0.01, lr: float = 0.01, time_limit: float | None = None,
                        progress: bool = False, log=None) -> list[dict]:
    """Prune copies of a trained ``model`` three ways and fine-tune each the same way.

    Parameters
    ----------
    model : nn.Module
        The trained dense model (not modified).
    loaders : (train_loader, test_loader)
        Calibration: the first ``calibration_batches`` training batches; accuracy on ``test_loader``;
        fine-tuning: ``epochs`` epochs of :func:`rcprune.torch.finetune` (``lr``, ``seed``) on ``train_loader``.
    sparsity : float
        Pruned fraction of every selected layer's rows (k = round((1 - sparsity) n) kept per row).
    method : str
        The retention method of the "retention" rows.
    layers : list of str, optional
        Default: every Conv2d (groups 1) and Linear (see :func:`rcprune.torch.retention_prune`).

    Returns
    -------
    list of dict
        One per variant of :data:`DEMO_VARIANTS`: sparsity, method (the label), solver, kept_weights, macs
        (None: sparse masks do not shrink dense MACs), acc_zero_shot, acc_finetuned, solve_seconds,
        layer_error (sum of E over the layers; after the refit for the refit row), layer_error_magnitude,
        mean_relative_error, retained_small, history, note.
    """
    train, test = loaders
    calib = [b for _, b in zip(range(calibration_batches), train)]
    rows = []
    for label, (variant_method, refit) in DEMO_VARIANTS.items():
        solver = variant_method or method
        pruned = copy.deepcopy(model)
        t = time.perf_counter()
        rep = retention_prune(pruned, calib, sparsity, method=solver, refit=refit, damping=damping, layers=layers,
                              seed=seed, time_limit=time_limit, progress=progress)
        solve_s = time.perf_counter() - t
        acc0 = evaluate_accuracy(pruned, test)
        hist = finetune(pruned, train, epochs, lr=lr, seed=seed, desc=f"{label} s={sparsity}", progress=progress)
        acc1 = evaluate_accuracy(pruned, test)
        tot = rep.totals()
        rows.append({"sparsity": float(sparsity), "method": label, "solver": solver,
                     "kept_weights": _kept_weights(pruned), "macs": None, "acc_zero_shot": acc0,
                     "acc_finetuned": acc1, "solve_seconds": solve_s,
                     "layer_error": tot["error_refit"] if refit else tot["error"],
                     "layer_error_magnitude": tot["error_magnitude"], "mean_relative_error": tot["mean_relative_error"],
                     "retained_small": tot["retained_small"], "history": hist,
                     "note": "per-row budget, sparse masks (accuracy only)"})
        if log is not None:
            log(f"{label} s={sparsity}: kept {rows[-1]['kept_weights']}, acc {acc0:.4f} -> fine-tuned {acc1:.4f} "
                f"(layer error {rows[-1]['layer_error']:.4g}, solve {solve_s:.1f} s)")
    return rows
