"""One layer of :func:`rcprune.torch.retention_prune` as a self-contained task: solve the layer's retention
instance, evaluate the masked error and the refit, and return the mask, the refit weights and the report
row. It needs only the layer's own weights and H (numpy, no torch), so joblib workers solve layers apart
(:func:`rcprune.parallel.map_layers`) and the parent writes every mask once all are solved.

>>> import numpy as np
>>> w, h = np.array([[1.0, -2.0, 0.5, 3.0]]), np.eye(4)
>>> mask, fitted, row = solve_layer("fc", w, h, dict(sparsity=0.5, method="retention-greedy"))
>>> mask.astype(int).tolist(), row["kept"], fitted is None
([[0, 1, 0, 1]], 2, True)
"""
from __future__ import annotations

import time

import numpy as np

from rcprune.compensation import quadratic_forms
from rcprune.retention.model import RetentionInstance, refit as ls_refit_rows

__all__ = ["solve_layer", "LAYER_DEFAULTS"]

LAYER_DEFAULTS = dict(scope="row", damping=0.01, objective="masked", seed=0, time_limit=None, refit=False,
                      options={})


def solve_layer(name: str, weights: np.ndarray, hessian: np.ndarray, settings: dict, target_weights=None,
                stats=None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(mask, fitted, row)`` of layer ``name``.

    Parameters
    ----------
    weights : (m, n) float64
        The layer's dense weights (im2col order); not written to.
    hessian : (n, n) float64
        H of its inputs, undamped; not written to.
    settings : dict
        ``sparsity``, ``method`` and the keys of :data:`LAYER_DEFAULTS` (``seed`` is this layer's seed).
    target_weights : (m, n) float64, optional
        The instance's weights when they are not ``weights`` (the dense target of a sequential solve).
    stats : (B, e), optional
        With a dense target: the refit's error is reported against the dense layer's outputs.

    Returns
    -------
    (mask, fitted, row)
        The kept weights (bool, m x n); the refit weights with ``refit=True`` (else None); the report row
        (see :class:`rcprune.torch.retention.RetentionReport`).
    """
    from rcprune.solve import solve

    s = {**LAYER_DEFAULTS, **settings}
    objective = s["objective"]
    inst = RetentionInstance(weights if target_weights is None else target_weights, hessian, sparsity=s["sparsity"],
                             scope=s["scope"], damping=s["damping"], name=name, objective=objective)
    t = time.perf_counter()
    res = solve(inst, method=s["method"], seed=s["seed"], time_limit=s["time_limit"], **s["options"])
    runtime = time.perf_counter() - t
    mask = res.solution.mask
    energy = float(quadratic_forms(weights, inst.hessian).sum())
    # the report's error, magnitude error and improvement are the masked model's (what the layer has
    # unless the refit is written); a compensated solve's cost is the error after the refit
    ev = res.evaluation if objective == "masked" else RetentionInstance(
        weights, inst.hessian, k=inst.k, scope=s["scope"], objective="masked", damping=0, name=name).evaluate(mask)
    error_refit = None if objective == "masked" else res.cost
    if stats is not None:   # the refit's output error against the dense layer (undamped statistics)
        v = res.evaluation.weights
        error_refit = float(stats[1].sum() - 2 * np.einsum("ij,ij->", v, stats[0]) + quadratic_forms(v, hessian).sum())
    fitted = None
    if s["refit"]:
        fitted, errors = (ls_refit_rows(inst.weights, inst.hessian, mask) if objective == "masked"
                          else (res.evaluation.weights, res.evaluation.row_costs))
        error_refit = float(errors.sum()) if stats is None else error_refit
    row = {"name": name, "m": inst.m, "n": inst.n, "k": inst.k, "kept": res.kept_count,
           "error_magnitude": ev.magnitude_cost, "error": ev.cost, "error_refit": error_refit,
           "energy": energy, "relative_error": ev.cost / energy if energy > 0 else 0.0,
           "improvement": ev.improvement, "retained_small": ev.retained_small,
           "retained_small_share": ev.retained_small / max(1, res.kept_count),
           "status": res.status, "runtime": runtime}
    return mask, fitted, row
