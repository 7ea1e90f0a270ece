"""Per-layer error-vs-budget curves on calibration data: what each layer loses, after the refit of its kept
weights, at each kept-entry count; :func:`rcprune.network.curve_allocation.allocate_by_curves` turns
them into per-layer budgets (the allocation OBC and SPDY use, here with row-and-column structure).

For every prunable layer of the dense model: the calibration statistics of its input (centered where a
bias or a BatchNorm absorbs the mean, damped as in :mod:`rcprune.torch.compensate`), its rows weighted by
the BatchNorm gain g_i (the error in the units the next layer sees, as :mod:`rcprune.torch.hessian_scores`),
one structured-OBS column elimination (:func:`rcprune.solvers.matrix.structured_obs.eliminate_columns`;
block steps above 1152 columns), and at each count K the best (R, C) of that elimination: for every column
count c the ⌊K / c⌋ rows of largest benefit (every row where the layer's rows are protected), the best c.
Each point is therefore an achievable error (an upper bound of the layer's optimum at K).

>>> import torch
>>> from rcprune.torch.extract import extract
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
>>> ext = extract(net, torch.zeros(1, 4), sparsity=0.0)
>>> curves = error_curves(net, ext, [torch.randn(64, 4, generator=torch.Generator().manual_seed(0))], points=4)
>>> k, e = curves["0"]
>>> k.tolist(), bool(e[-1] < 1e-12), bool((e[:-1] >= e[1:] - 1e-12).all())    # none kept ... all kept
([0, 1, 2, 3, 6, 9, 12], True, True)
"""
from __future__ import annotations

import copy

import numpy as np
import torch.nn as nn

from rcprune.compensation import DEFAULT_DAMPING
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.solvers.matrix.structured_obs import eliminate_columns
from rcprune.validation import InvalidInstanceError, check_int_option, check_nonnegative

from rcprune.torch.batches import check_reusable
from rcprune.torch.batchnorm import following_batchnorm, output_scales
from rcprune.torch.extract import Extraction
from rcprune.torch.layer_statistics import layer_statistics
from rcprune.torch.rcmask import original_tensor

__all__ = ["error_curves", "curve_of", "shape_grid"]

MAX_FULL_COLUMNS = 1152   # as the compensation: block steps above this many columns
BLOCK_STEPS = 128


def _elimination(instance: CompensatedInstance):
    """``(cols, cum, total)``: the kept column count of each exact prefix of one column elimination (at least
    one column), ``cum[p, r]`` the largest benefit ``r`` rows get on prefix ``p`` (rows by benefit), and the
    layer's energy; ``all_rows`` curves use ``cum[p, m]``."""
    m, n = instance.shape
    block = 1 if n <= MAX_FULL_COLUMNS else -(-n // BLOCK_STEPS)
    _, errors = eliminate_columns(instance, block=block)
    t = np.flatnonzero(~np.isnan(errors).any(axis=1))            # exact prefixes (block boundaries)
    t = t[t < n]                                                  # at least one kept column
    benefit = instance.energies[None, :] - errors[t]              # (prefixes, m)
    cum = np.concatenate([np.zeros((len(t), 1)), np.cumsum(-np.sort(-benefit, axis=1), axis=1)], axis=1)
    return n - t, cum, float(instance.energies.sum())


LOW_POINTS = 8   # log-spaced counts below the first even step: a budget of a few % per layer stays reachable


def curve_counts(size: int, points: int) -> np.ndarray:
    """The kept counts of a layer's curve: ``points + 1`` evenly spaced from 0 to ``size`` and ``LOW_POINTS``
    log-spaced from 1 to the first step (``size / points``), so that the curves reach any budget the layers
    can meet (evenly spaced alone, every layer kept at least 1/``points`` of itself: 98% removed was
    refused with 32 points).

    >>> curve_counts(1000, 4).tolist()
    [0, 1, 2, 5, 11, 23, 52, 114, 250, 500, 750, 1000]
    """
    even = np.linspace(0, size, points + 1)
    low = np.geomspace(1, max(size / points, 1), LOW_POINTS)
    return np.unique(np.round(np.concatenate([even, low])).astype(np.int64))


def curve_of(instance: CompensatedInstance, counts: np.ndarray, all_rows: bool = False, shapes: bool = False):
    """The error after the refit at each kept count in ``counts``: the best of one column elimination's
    prefixes, with the best rows for each (every row with ``all_rows``; a count below one full column
    then prunes the whole layer). With ``shapes``: ``(errors, rows, cols)``, the kept shape of each point
    (``(0, 0)`` where nothing is kept). O(n^3 + m n^2 + n m log m + |counts| n)."""
    m = instance.m
    cols, cum, total = _elimination(instance)
    if all_rows:
        rows = np.where(cols[None, :] * m <= counts[:, None], m, 0)
    else:
        rows = np.minimum(m, counts[:, None] // cols[None, :])    # (counts, prefixes)
    gained = np.take_along_axis(cum, rows.T, axis=1).T           # cum[prefix, rows[count, prefix]]
    best = gained.argmax(axis=1)
    curve = np.maximum(total - gained[np.arange(len(counts)), best], 0.0)
    if not shapes:
        return curve
    kept_rows = rows[np.arange(len(counts)), best]
    return curve, kept_rows, np.where(kept_rows > 0, cols[best], 0)


def shape_grid(instance: CompensatedInstance, points: int, all_rows: bool = False):
    """``(rows, cols, errors)`` over a grid of kept shapes: about ``points`` row counts (every row with
    ``all_rows``) times about ``points`` of the elimination's column counts, each with the error after the
    refit of its best rows on that prefix's columns. For budgets that price a layer by its shape (latency,
    MACs), where the least-error shape of a count need not be the cheapest."""
    m = instance.m
    cols, cum, total = _elimination(instance)
    prefixes = np.unique(np.round(np.linspace(0, len(cols) - 1, min(points, len(cols)))).astype(np.int64))
    row_counts = np.array([m]) if all_rows else np.unique(np.round(np.geomspace(1, m, min(points, m))).astype(np.int64))
    r, p = np.meshgrid(row_counts, prefixes, indexing="ij")
    errors = np.maximum(total - cum[p, r], 0.0)
    return r.ravel(), cols[p].ravel(), errors.ravel()


def error_curves(model: nn.Module, extraction: Extraction, calibration, *, points: int = 32,
                 damping: float = DEFAULT_DAMPING, max_batches: int | None = None,
                 fixed_rows: dict[str, bool] | None = None, shapes: bool = False) -> dict[str, tuple]:
    """Per layer ``(kept counts, errors)`` at the counts of :func:`curve_counts` (``points + 1`` evenly spaced
    from 0 to the layer's size, and a few log-spaced below the first step);
    with ``shapes`` instead ``(counts, errors, rows, cols)`` over a grid of kept shapes (:func:`shape_grid`,
    about ``points`` x ``points``; counts = rows x cols).

    Parameters
    ----------
    model : nn.Module
        The dense model (its original weights are read if it is masked); run in eval mode.
    extraction : Extraction
        Its extraction (:func:`rcprune.torch.extract`): which layers, their weights' shapes.
    calibration : iterable of batches
        The calibration inputs (one pass per layer, stopped at the layer).
    points : int
        Kept counts per layer besides 0.
    damping : float
        H + damping * mean(diag H) * I.
    fixed_rows : mapping layer -> bool, optional
        Layers whose rows are all kept (a protected output, e.g. the classifier): their curves keep every row.

    Returns
    -------
    dict
        layer -> (int64 counts, float64 errors), errors non-increasing in the count up to the elimination's
        greedy choices, 0 at the full layer.
    """
    points = check_int_option(points, "points", minimum=1)
    check_reusable(calibration, "calibration", "error_curves")
    damping = check_nonnegative(damping, "damping")
    fixed_rows = fixed_rows or {}
    modules = dict(model.named_modules())
    scales = output_scales(model, extraction)
    after_bn = following_batchnorm(extraction)
    out = {}
    was_training = model.training
    model.eval()
    twin = copy.deepcopy(model)   # layer_statistics reads a layer's inputs in two models; here both are dense
    twins = dict(twin.named_modules())
    try:
        for name, lm in extraction.layers.items():
            module = modules[lm.module]
            weight = original_tensor(module).detach().double().reshape(lm.weight_shape[0], -1)
            m, n = weight.shape
            H, _, mu, _, _, samples = layer_statistics(model, twin, name, module, twins[lm.module], weight,
                                                       np.arange(n), calibration, max_batches)
            if lm.has_bias or name in after_bn:
                H = H - np.outer(mu, mu)
            if not np.isfinite(H).all():
                raise InvalidInstanceError(f"layer {name!r}: the calibration inputs are not finite (NaN or inf)")
            w = weight.numpy() * np.sqrt(scales[name])[:, None]
            try:
                inst = CompensatedInstance(w, H, budget=m * n, damping=damping, name=name)
            except InvalidInstanceError as exc:
                raise InvalidInstanceError(f"layer {name!r} ({samples} calibration vectors for {n} inputs): "
                                           f"{exc}") from None
            if shapes:
                r, c, e = shape_grid(inst, points, all_rows=bool(fixed_rows.get(name)))
                out[name] = (r * c, e, r, c)
            else:
                counts = curve_counts(m * n, points)
                out[name] = (counts, curve_of(inst, counts, all_rows=bool(fixed_rows.get(name))))
    finally:
        model.train(was_training)
    return out
