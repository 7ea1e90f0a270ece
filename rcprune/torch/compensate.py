"""Sequential data-aware compensation of a network solution: layer by layer, in the order the data flows,
re-choose the kept columns on the compensated objective and refit the kept weights, so the pruned layer
reproduces the *dense* layer's output from the inputs the *pruned* network gives it.

For layer L with dense weights W, dense inputs x_d and pruned-network inputs x_p (only the columns whose
input channel is alive), calibration gives H = E[x_p x_p^T], B = E[(W x_d) x_p^T] and the target energy
e_i = E[(w_i x_d)^2] (all centered when a bias or a BatchNorm absorbs the mean). The error of kept weights
V on rows R and columns C is sum_i e_i - 2 <V_i, B_iC> + V_i H_CC V_i^T, minimized by V = B_RC H_CC^-1;
with W~ = B H^-1 (the dense layer refit to the pruned inputs) it equals a constant plus the compensated
objective of (W~, H) (:mod:`rcprune.matrix.compensated`), so any compensated matrix method chooses C
(the rows stay the network solution's: they are channels other layers read). The network solver's column
count is kept (so its budget holds), the channel floor's columns are forced in (by solving on the Schur
complement that partials them out, which is exact), rows are weighted by g_i = gamma_i^2 / (var_i + eps)
of the BatchNorm after the layer (the error the next layer sees), and the bias is corrected so the mean
output matches the dense one. Before each layer the BatchNorm statistics are re-estimated on the
calibration data (:func:`rcprune.torch.batchnorm.reestimate_batchnorm`), so each layer compensates what
the already-pruned, re-normalized layers before it lost.

See ``proofs/compensated.md``, "Network level: the dense output from the pruned inputs", for the identities.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy.linalg import cho_factor, cho_solve, LinAlgError
from tqdm.auto import tqdm

from rcprune.compensation import DEFAULT_DAMPING, dense_target, partial_out, quadratic_forms
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.network.cleanup import drop_unread_rows
from rcprune.network.model import NetworkSolution, alive_channels
from rcprune.parallel import check_backend, check_n_jobs, layer_seed, map_layers
from rcprune.validation import (InvalidInstanceError, check_flag, check_int_option, check_nonnegative, check_seed,
                                check_time_limit)

from rcprune.torch.batches import check_reusable
from rcprune.torch.batchnorm import following_batchnorm, output_scales, reestimate_batchnorm
from rcprune.torch.extract import Extraction, extraction_of
from rcprune.torch.masking import apply, restore
from rcprune.torch.rcmask import rc_mask
from rcprune.torch.layer_statistics import layer_statistics
from rcprune.torch.pass_statistics import pass_statistics

__all__ = ["compensate", "CompensationReport", "REFIT_ONLY"]

REFIT_ONLY = "refit"   # layer_method that keeps the network solver's columns and only refits
DEFAULT_LAYER_METHOD = "compensated-rc-tabu"
# By default a layer with more alive columns gets block structured-OBS (BLOCK_STEPS steps of n / BLOCK_STEPS
# columns): the exact elimination that every compensated RC method starts from takes n rank-1 steps of
# O(n^2) (92 s at 256 x 2304 on 2 loaded cores, 15 s in blocks for the same error)
MAX_DEFAULT_COLUMNS = 1152
BLOCK_STEPS = 128


@dataclass(frozen=True)
class CompensationReport:
    """What :func:`compensate` did, per layer in order: ``layer``, ``rows`` and ``cols`` kept (of
    ``alive_cols`` whose input channel is alive), ``changed`` (columns swapped in), ``error_masked`` (relative output error of the network solution's masked
    layer, original weights) and ``error`` (after re-choosing and refitting), both against the dense
    layer's output and over every row (a pruned row loses its whole output), ``norm_ratio`` (Frobenius
    norm of the kept weights after the refit / of the dense kept rows), ``centered``, ``method`` (with
    ``block`` for block structured-OBS) and ``seconds`` (with ``sequential=False`` the layer's own solve time
    in its worker); and the settings (``wall_seconds``: the parallel part's wall time, non-sequential only)."""

    layers: tuple[dict, ...]
    layer_method: str
    damping: float
    batchnorm: bool
    samples: int
    sequential: bool = True
    wall_seconds: float | None = None

    def table(self) -> list[dict]:
        return [dict(r) for r in self.layers]

    def medians(self) -> dict:
        """Median over the compensated layers of the masked error, the error and the norm ratio."""
        keys = ("error_masked", "error", "norm_ratio")
        return {k: float(np.median([r[k] for r in self.layers])) if self.layers else 0.0 for k in keys}


def _layer_error(e, Bm, H, rows, kc, V, scale=None) -> float:
    """sum_i g_i (e_i - [i in R] (2 <V_i, B_iC> - V_i H_CC V_i^T)), the output error of weights V on R x C
    (g = 1 unless ``scale`` is given)."""
    g = np.ones(len(e)) if scale is None else scale
    gain = 2 * np.einsum("ij,ij->i", V, Bm[np.ix_(rows, kc)]) - quadratic_forms(V, H[np.ix_(kc, kc)])
    return float(g @ e - g[rows] @ gain)


def _refit(Hd, pull, rows, cols) -> np.ndarray:
    """V = (B + lam W)_RC (H_CC + lam I)^-1: the kept rows' least-squares weights on the kept columns,
    damped towards the dense weights (the compensated refit of W~ = (B + lam W) H_d^-1)."""
    kc = np.flatnonzero(cols)
    return cho_solve(cho_factor(Hd[np.ix_(kc, kc)]), pull[np.ix_(rows, kc)].T).T


def _choose_columns(name, Wt, Hd, rows, kept, fixed, scale, method, options, seed, time_limit):
    """The kept columns (a mask over the alive ones) chosen by ``method`` on the compensated objective of
    (W~_R scaled by sqrt(g), H), with ``kept.sum()`` columns and every ``fixed`` one."""
    from rcprune.solve import solve

    c, f = int(kept.sum()), int(fixed.sum())
    free = np.flatnonzero(~fixed)
    if method == REFIT_ONLY or c == len(kept) or c - f <= 0 or c - f >= len(free):
        return kept
    ws = np.sqrt(scale[rows])[:, None] * Wt[rows]
    inst = CompensatedInstance(ws[:, free], partial_out(Hd, fixed), shape=(len(rows), c - f), damping=0, name=name)
    res = solve(inst, method=method, seed=seed, time_limit=time_limit, **options)
    if not res.solution.rows.all() or int(res.solution.cols.sum()) != c - f:
        return kept   # a solver that could not keep the shape (cut short): the network's columns stand
    out = fixed.copy()
    out[free[res.solution.cols]] = True
    return out


def _layer_sets(li, layers, alive):
    """The layer's alive input columns, kept rows, and kept columns among the alive ones."""
    alive_cols = np.repeat(np.concatenate([alive[g] for g, _ in li.inputs]), li.block)
    alive_idx = np.flatnonzero(alive_cols)
    return alive_idx, np.flatnonzero(layers[li.name][0]), (layers[li.name][1] & alive_cols)[alive_idx]


def _dense_bias(dmodule, lm):
    return dmodule.bias.detach().double().numpy() if lm.has_bias else None


def compensate_layer(name, stats, weight, bias, alive_idx, rows, kept, fixed, scale, centered, damping, layer_method,
                     seed, time_limit):
    """One layer's column choice and refit from its statistics ``(H, B, mu_p, mu_y, e, N)``
    (:func:`rcprune.torch.layer_statistics.layer_statistics`): ``(columns, V, bias, row)``, the kept
    columns (a mask over the alive ones), their refit weights on the kept rows, the corrected bias of the kept
    rows (None without a bias) and the report's entries. numpy only: a joblib worker runs it."""
    H, Bm, mu_p, mu_y, yy, samples = stats
    e = yy - mu_y ** 2 if centered else yy
    if centered:
        H, Bm = H - np.outer(mu_p, mu_p), Bm - np.outer(mu_y, mu_p)
    if not (np.isfinite(H).all() and np.isfinite(Bm).all()):
        raise InvalidInstanceError(f"layer {name!r}: the calibration statistics are not finite (NaN or inf inputs)")
    w_alive = weight[:, alive_idx]
    try:
        Wt, Hd = dense_target(Bm, H, w_alive, damping)
    except LinAlgError:
        raise InvalidInstanceError(f"layer {name!r}: the damped input Gram matrix is not positive definite "
                                   f"({samples} calibration vectors for {len(alive_idx)} inputs): raise damping "
                                   "or give more calibration data") from None
    method, options = layer_method, {}
    if method is None:
        large = len(alive_idx) > MAX_DEFAULT_COLUMNS
        method = "structured-obs" if large else DEFAULT_LAYER_METHOD
        options = {"block": -(-len(alive_idx) // BLOCK_STEPS)} if large else {}
    new = _choose_columns(name, Wt, Hd, rows, kept, fixed, scale, method, options, seed, time_limit)
    kc0 = np.flatnonzero(kept)
    V0 = weight[np.ix_(rows, alive_idx[kc0])]
    # the best of: the chosen columns refit, the network's columns refit, the network's masked weights
    # (a damped refit of what is barely pruned can lose to the original), by the objective (g-weighted)
    pull = Wt @ Hd    # = B + lam W: the damped refit leans towards the dense weights
    candidates = [(new, _refit(Hd, pull, rows, new)), (kept, V0)]
    if (new != kept).any():
        candidates.insert(1, (kept, _refit(Hd, pull, rows, kept)))
    new, V = min(candidates, key=lambda o: _layer_error(e, Bm, H, rows, np.flatnonzero(o[0]), o[1], scale))
    kc = np.flatnonzero(new)
    before, error = _layer_error(e, Bm, H, rows, kc0, V0), _layer_error(e, Bm, H, rows, kc, V)
    b_new = None if bias is None else bias[rows] + mu_y[rows] - V @ mu_p[kc]   # centered: the dense mean back
    energy = max(float(e.sum()), 1e-300)
    dense_norm = float(np.linalg.norm(weight[rows]))
    row = {"rows": int(rows.size), "cols": int(kc.size), "alive_cols": int(len(alive_idx)),
           "changed": int((new & ~kept).sum()),
           "error_masked": max(before, 0.0) / energy, "error": max(error, 0.0) / energy,
           "norm_ratio": float(np.linalg.norm(V)) / dense_norm if dense_norm > 0 else 0.0,
           "centered": bool(centered), "method": method, **options}
    return new, V, b_new, row


def _write(module, lm, rows, alive_idx, out) -> None:
    """The refit weights and the corrected bias into the masks' trainable values."""
    new, V, b_new, _ = out
    cols_full = alive_idx[np.flatnonzero(new)]
    with torch.no_grad():
        w_val = rc_mask(module, "weight").value.data
        w2 = w_val.view(w_val.shape[0], -1)
        w2[torch.from_numpy(rows)[:, None], torch.from_numpy(cols_full)[None, :]] = torch.from_numpy(V).to(w2.dtype)
        if b_new is not None:
            b_val = rc_mask(module, "bias").value.data
            b_val[torch.from_numpy(rows)] = torch.from_numpy(b_new).to(b_val.dtype)


def compensate(model: nn.Module, solution: NetworkSolution, calibration, *, extraction: Extraction | None = None,
               layer_method: str | None = None, damping: float = DEFAULT_DAMPING, batchnorm: bool = True,
               max_batches: int | None = None, seed: int = 0, time_limit: float | None = None,
               progress: bool = False, sequential: bool = True, n_jobs: int = 1,
               backend: str = "loky") -> tuple[NetworkSolution, CompensationReport]:
    """Mask ``model`` with ``solution`` and compensate it layer by layer on ``calibration``; in place.

    Parameters
    ----------
    model : nn.Module
        The model ``extraction`` was made from; masked with ``solution`` here (:func:`rcprune.torch.apply`),
        so :func:`rcprune.torch.restore` still gives the original weights back. Its unmasked weights (and
        current BatchNorm statistics) are the dense reference.
    solution : NetworkSolution
        Its rows are kept; each layer's column count is kept (its columns may change).
    calibration : iterable of batches
        Re-iterable (a list or a DataLoader): one pass per layer, plus one BatchNorm pass per layer with
        ``batchnorm=True``.
    layer_method : str, optional
        A compensated matrix method of :func:`rcprune.solve` choosing each layer's columns, or ``"refit"``
        to keep the solution's columns. Default: ``"compensated-rc-tabu"`` for layers of at most
        :data:`MAX_DEFAULT_COLUMNS` alive columns, block structured-OBS above (``block`` = n / 128
        columns per step; the report says which ran).
    damping : float
        H + damping * mean(diag H) * I in the choice and the refit.
    batchnorm : bool
        Re-estimate BatchNorm statistics before each layer and at the end.
    seed, time_limit :
        For ``layer_method``; ``time_limit`` in seconds per layer. With ``sequential=False`` layer ``name``
        gets the seed :func:`rcprune.parallel.layer_seed` (``seed``, ``name``); the sequential default keeps
        ``seed`` for every layer (its results are unchanged).
    sequential : bool
        True (default): each layer's statistics from the model with the layers before it already
        compensated (two partial passes per layer, one after the other). False: every layer's statistics
        from one pass of the masked, uncompensated model (BatchNorm re-estimated once before it), then the
        layers are independent: each layer's columns and refit are chosen on its own, on ``n_jobs``
        workers, and written once all are done (a layer that fails leaves the model unmasked, with its
        BatchNorm statistics as they were, and the error names it). Cheaper (one pass instead of one per layer, and
        parallel), but a layer no longer makes up for what the compensation of the layers before it
        changed.
    n_jobs, backend :
        Joblib workers and backend of the per-layer work (:func:`rcprune.parallel.map_layers`); only with
        ``sequential=False`` (otherwise an error naming ``sequential``).
    progress : bool
        One tqdm bar over the layers (postfix: the layer and its relative error).

    Returns
    -------
    (NetworkSolution, CompensationReport)
        The solution the model is now masked with (the same rows, the chosen columns, rows no consumer
        reads any more dropped) and the per-layer report.

    Notes
    -----
    Cost per layer: two partial forward passes over the calibration data, O(N a^2) for the a alive
    columns, the method's solve and one a x a factorization.
    """
    from rcprune.solve import method_names

    extraction = extraction_of(model, extraction)
    inst = extraction.instance
    extraction.effective(solution)   # checks the solution belongs to the instance
    check_reusable(calibration, "calibration", "compensation")
    methods = method_names("matrix", objective="compensated")
    if layer_method is not None and layer_method != REFIT_ONLY and layer_method not in methods:
        raise InvalidInstanceError(f"layer_method must be {REFIT_ONLY!r} or a compensated matrix method "
                                   f"({', '.join(methods)}), got {layer_method!r}")
    damping = check_nonnegative(damping, "damping")
    batchnorm = check_flag(batchnorm, "batchnorm")
    seed, time_limit = check_seed(seed), check_time_limit(time_limit)
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    sequential = check_flag(sequential, "sequential")
    n_jobs, backend = check_n_jobs(n_jobs), check_backend(backend)
    if sequential and n_jobs != 1:
        raise InvalidInstanceError(f"sequential=True takes each layer's statistics from the model with the layers "
                                   f"before it already compensated, so the layers cannot run in parallel: n_jobs="
                                   f"{n_jobs} needs sequential=False (or use n_jobs=1)")
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}   # BatchNorm statistics, to undo a failure
    apply(model, solution, extraction)
    dense = restore(copy.deepcopy(model)).eval()
    was = model.training
    model.eval()
    modules, dmodules = dict(model.named_modules()), dict(dense.named_modules())
    scales = output_scales(dense, extraction)
    after_bn = following_batchnorm(extraction)
    layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in solution.items()}
    alive = alive_channels(inst, solution)   # rows never change, so neither do the alive channels
    report, samples = [], 0
    if not sequential:   # every layer's statistics from one pass of the masked, uncompensated model
        try:
            return _one_pass(model, dense, inst, extraction, solution, calibration, layers, alive, scales, after_bn,
                             damping, batchnorm, max_batches, layer_method, seed, time_limit, progress, n_jobs,
                             backend, was)
        except BaseException:   # nothing half-written: unmasked, the BatchNorm statistics as they were
            restore(model)
            with torch.no_grad():
                for k, b in model.named_buffers():
                    if k in buffers:
                        b.copy_(buffers[k])
            model.train(was)
            raise
    bar = tqdm(inst.layers, desc="compensate", leave=False, disable=not progress)
    for li in bar:
        name, lm = li.name, extraction.layers[li.name]
        t = time.perf_counter()
        alive_idx, rows, kept = _layer_sets(li, layers, alive)
        if rows.size == 0 or not kept.any():
            continue
        if batchnorm:   # (modes are restored: the model stays in eval mode)
            reestimate_batchnorm(model, calibration, max_batches=max_batches)
        module, dmodule = modules[lm.module], dmodules[lm.module]
        weight = dmodule.weight.detach().double().reshape(lm.weight_shape[0], -1)
        stats = layer_statistics(model, dense, name, module, dmodule, weight, alive_idx, calibration, max_batches)
        samples = stats[-1]
        out = compensate_layer(name, stats, weight.numpy(), _dense_bias(dmodule, lm), alive_idx, rows, kept,
                               inst.fixed_cols(name)[alive_idx], scales[name], lm.has_bias or name in after_bn,
                               damping, layer_method, seed, time_limit)
        _write(module, lm, rows, alive_idx, out)
        cols = np.zeros_like(layers[name][1])
        cols[alive_idx[out[0]]] = True
        layers[name] = (layers[name][0], cols)
        apply(model, NetworkSolution(layers), extraction)
        bar.set_postfix(layer=name, error=f"{out[3]['error']:.3g}")
        report.append({"layer": name, **out[3], "seconds": time.perf_counter() - t})
    final = drop_unread_rows(inst, NetworkSolution(layers))
    apply(model, final, extraction)
    if batchnorm:
        reestimate_batchnorm(model, calibration, max_batches=max_batches)
    model.train(was)
    return final, CompensationReport(tuple(report), layer_method or "default", float(damping), batchnorm, samples)


def _one_pass(model, dense, inst, extraction, solution, calibration, layers, alive, scales, after_bn, damping,
              batchnorm, max_batches, layer_method, seed, time_limit, progress, n_jobs, backend, was):
    """The non-sequential compensation: statistics of every layer from one pass of the masked model, the
    layers' column choices and refits as independent tasks, written in layer order once all are done."""
    modules, dmodules = dict(model.named_modules()), dict(dense.named_modules())
    if batchnorm:
        reestimate_batchnorm(model, calibration, max_batches=max_batches)
    entries, sets = [], {}
    for li in inst.layers:
        lm = extraction.layers[li.name]
        alive_idx, rows, kept = _layer_sets(li, layers, alive)
        if rows.size == 0 or not kept.any():
            continue
        weight = dmodules[lm.module].weight.detach().double().reshape(lm.weight_shape[0], -1)
        sets[li.name] = (alive_idx, rows, kept, weight)
        entries.append((li.name, modules[lm.module], dmodules[lm.module], weight, alive_idx))
    stats = pass_statistics(model, dense, entries, calibration, max_batches)
    jobs = []
    for name, (alive_idx, rows, kept, weight) in sets.items():
        lm = extraction.layers[name]
        jobs.append((name, (name, stats.pop(name), weight.numpy(), _dense_bias(dmodules[lm.module], lm), alive_idx,
                            rows, kept, inst.fixed_cols(name)[alive_idx], scales[name],
                            lm.has_bias or name in after_bn, damping, layer_method, layer_seed(seed, name),
                            time_limit)))
    samples = jobs[-1][1][1][-1] if jobs else 0
    t = time.perf_counter()
    outs = map_layers(_timed_layer, jobs, n_jobs=n_jobs, backend=backend, progress=progress, desc="compensate",
                      postfix=lambda out: {"error": f"{out[0][3]['error']:.3g}"})
    wall = time.perf_counter() - t
    report = []
    for (name, (alive_idx, rows, _, _)), (out, seconds) in zip(sets.items(), outs):
        _write(modules[extraction.layers[name].module], extraction.layers[name], rows, alive_idx, out)
        cols = np.zeros_like(layers[name][1])
        cols[alive_idx[out[0]]] = True
        layers[name] = (layers[name][0], cols)
        report.append({"layer": name, **out[3], "seconds": seconds})
    final = drop_unread_rows(inst, NetworkSolution(layers))
    apply(model, final, extraction)
    if batchnorm:
        reestimate_batchnorm(model, calibration, max_batches=max_batches)
    model.train(was)
    return final, CompensationReport(tuple(report), layer_method or "default", float(damping), batchnorm, samples,
                                     sequential=False, wall_seconds=wall)


def _timed_layer(*args):
    t = time.perf_counter()
    out = compensate_layer(*args)
    return out, time.perf_counter() - t
