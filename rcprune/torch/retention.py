"""Small-weight retention on a PyTorch model: per layer, keep the weights whose removal changes the
layer's output least on calibration data, not simply the largest ones.

Forward pre-hooks stream every selected layer's input (im2col columns for a conv) into H = X X^T / N in
float64 (memory n^2 per layer, one pass over the calibration data on the unpruned model); each layer is
then solved as a :class:`rcprune.RetentionInstance` and masked as :func:`rcprune.torch.apply` masks (a
:class:`rcprune.torch.rcmask.RCMask` parametrization), so :func:`rcprune.torch.restore` and
:func:`rcprune.torch.bake` work on it.

>>> import torch
>>> from rcprune.torch.rcmask import keep_mask
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> data = [torch.randn(16, 8, generator=torch.Generator().manual_seed(0))]
>>> rep = retention_prune(net, data, 0.5, method="retention-greedy")
>>> [r["name"] for r in rep.layers], int(keep_mask(net[0]).sum(1)[0])
(['0', '2'], 4)
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import LinAlgError
import torch.nn as nn
from tqdm.auto import tqdm

from rcprune.parallel import check_backend, check_n_jobs, layer_seed, map_layers
from rcprune.retention_task import solve_layer
from rcprune.retention.model import SCOPES
from rcprune.validation import (InvalidInstanceError, check_flag, check_fraction, check_int_option,
                                check_nonnegative, check_seed, check_time_limit)

from rcprune.compensation import dense_target
from rcprune.torch.batchnorm import reestimate_batchnorm
from rcprune.torch.hessians import layer_hessians
from rcprune.torch.layer_inputs import layer_inputs
from rcprune.torch.layer_statistics import layer_statistics
from rcprune.torch.masking import is_masked, restore
from rcprune.torch.rcmask import register, unregister
from rcprune.torch.retention_curves import (allocate_retention, check_budget as check_curve_budget, retention_curves,
                                            uniform_error)
from rcprune.torch.retention_layers import retention_layers

__all__ = ["retention_prune", "RetentionReport", "layer_hessians", "layer_inputs", "restore_original",
           "retention_layers"]


@dataclass(frozen=True)
class RetentionReport:
    """What :func:`retention_prune` did, layer by layer.

    Attributes
    ----------
    layers : tuple of dict
        Per layer: ``name``, ``m`` (rows: output channels / features), ``n`` (inputs: C_in kh kw or in
        features), ``k`` (kept per row, or in the layer with ``scope="layer"``), ``kept``, ``error_magnitude``
        (E of the magnitude mask under the same budget: "E before"), ``error`` (E of the chosen mask),
        ``error_refit`` (E after the least-squares refit: with ``refit=True`` or a compensated method, else
        None; with ``sequential`` and ``target="dense"`` the refit's output error against the dense layer on
        the dense network's inputs, undamped), ``energy`` (w^T H w summed over rows: E of
        pruning everything), ``relative_error`` (error / energy), ``improvement`` (1 - error /
        error_magnitude), ``retained_small`` (kept weights below the magnitude threshold) and its share of the
        kept weights, ``status``, ``runtime`` (solve seconds). E uses the damped H.
    method, sparsity, scope, damping, refit, samples :
        The call's settings; ``samples`` counts the calibration vectors (output positions) of the first layer.
    skipped : tuple of str
        Grouped convolutions left out of the default layer selection.
    allocation : dict or None
        With ``allocation="curves"``: ``rule``, ``points``, ``counts`` and ``sparsity`` per layer (the
        chosen split), ``error`` (its summed curve error) and ``lower_bound`` (no split within the budget
        has less curve error), ``uniform_error`` (the uniform split's; None where it keeps less than a
        weight per row in some layer, which the curves never do), ``curves`` (per layer the kept counts and
        errors) and ``seconds``; None with the uniform split.
    """

    layers: tuple[dict, ...]
    method: str
    sparsity: float
    scope: str
    damping: float
    refit: bool
    samples: int
    skipped: tuple[str, ...] = ()
    allocation: dict | None = None

    def table(self) -> list[dict]:
        return [dict(r) for r in self.layers]

    def totals(self) -> dict:
        """Sums over the layers of the errors, kept and retained small weights, and of the runtime."""
        s = {key: float(sum(r[key] for r in self.layers)) for key in ("error_magnitude", "error", "energy", "runtime")}
        refits = [r["error_refit"] for r in self.layers]
        s["error_refit"] = float(sum(refits)) if refits and None not in refits else None
        s["kept"] = int(sum(r["kept"] for r in self.layers))
        s["retained_small"] = int(sum(r["retained_small"] for r in self.layers))
        s["improvement"] = 1.0 - s["error"] / s["error_magnitude"] if s["error_magnitude"] > 0 else 0.0
        s["mean_relative_error"] = float(np.mean([r["relative_error"] for r in self.layers])) if self.layers else 0.0
        return s


def _dense_weights(module: nn.Module) -> np.ndarray:
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1).cpu().to(torch.float64).numpy()


def _layer_settings(settings: dict, seed: int, name: str, layer_sparsity: dict | None) -> dict:
    """One layer's solve settings: its seed from its name, its sparsity from the allocation if there is one."""
    out = dict(settings, seed=layer_seed(seed, name))
    if layer_sparsity is not None:
        out["sparsity"] = layer_sparsity[name]
    return out


def layer_jobs(modules: dict, names: list[str], hessians: dict, settings: dict, seed: int,
               layer_sparsity: dict | None = None) -> list:
    """The :func:`rcprune.retention_task.solve_layer` jobs of ``names``: each its own weights and H
    (taken out of ``hessians``, so the dict does not hold them twice), its seed from its name and, with
    ``layer_sparsity``, its own sparsity."""
    return [(name, (name, _dense_weights(modules[name]), hessians.pop(name),
                    _layer_settings(settings, seed, name, layer_sparsity))) for name in names]


def _register(module: nn.Module, mask: np.ndarray, fitted: np.ndarray | None) -> None:
    """Mask ``module.weight`` (reversibly) and write the refit weights into the mask's trainable values."""
    w = module.weight
    keep = torch.from_numpy(mask.copy()).reshape(w.shape).to(w.device)
    rc = register(module, "weight", keep)
    if fitted is not None:
        with torch.no_grad():
            rc.value[keep] = torch.from_numpy(fitted).reshape(w.shape).to(device=w.device, dtype=w.dtype)[keep]


def _sequential(model, loader, names, modules, settings, seed, max_batches, batchnorm, dense_target_on, progress,
                postfix, layer_sparsity=None):
    """Layer by layer: statistics from the network pruned so far, solve, mask; serial by nature. On an
    error the layers masked so far are unmasked again."""
    dense = copy.deepcopy(model).eval() if dense_target_on else None
    dense_modules = dict(dense.named_modules()) if dense is not None else {}
    solved, counts = [], {}
    bar = tqdm(names, desc=f"{settings['method']} layers", leave=False, disable=not progress)
    try:
        for name in bar:
            module = modules[name]
            w2 = _dense_weights(module)
            target_weights, stats = None, None
            if batchnorm:
                reestimate_batchnorm(model, loader, max_batches=max_batches)
            if dense_target_on:
                h, b, _, _, e, counts[name] = layer_statistics(
                    model, dense, name, module, dense_modules[name], torch.from_numpy(w2), np.arange(w2.shape[1]),
                    loader, max_batches)
                if not (np.isfinite(h).all() and np.isfinite(b).all()):
                    raise InvalidInstanceError(f"layer {name!r}: the calibration statistics are not finite")
                h = (h + h.T) / 2   # the instance checks it in full
                try:
                    target_weights, _ = dense_target(b, h, w2, settings["damping"])
                except LinAlgError:
                    raise InvalidInstanceError(f"layer {name!r}: the damped input Gram matrix is not positive "
                                               "definite: raise damping or give more calibration data") from None
                stats = (b, e)
            else:
                hs, c = layer_hessians(model, loader, [name], max_batches=max_batches)
                h, counts[name] = hs[name], c[name]
            out, = map_layers(solve_layer, [(name, (name, w2, h, _layer_settings(settings, seed, name, layer_sparsity),
                                                    target_weights, stats))])   # errors name the layer
            _register(module, out[0], out[1])
            solved.append(out)
            bar.set_postfix(layer=name, **postfix(out))
        if batchnorm:
            reestimate_batchnorm(model, loader, max_batches=max_batches)
    except BaseException:
        for name in names[:len(solved)]:
            unregister(modules[name], "weight", bake=False)
        raise
    return solved, counts


def retention_prune(model: nn.Module, calibration_loader, sparsity: float, *, method: str = "retention-annealing",
                    refit: bool = False, damping: float = 0.01, layers=None, scope: str = "row", seed: int = 0,
                    time_limit: float | None = None, max_batches: int | None = None, sequential: bool = False,
                    target: str = "dense", batchnorm: bool = True, progress: bool = False, n_jobs: int = 1,
                    backend: str = "loky", shards=None, allocation: str = "uniform", points: int = 16,
                    **options) -> RetentionReport:
    """Prune ``model`` in place, layer by layer, to ``sparsity`` by small-weight retention.

    Parameters
    ----------
    model : nn.Module
        Unmasked on the selected layers (``restore`` or ``bake`` earlier masks first).
    calibration_loader : iterable or None
        Batches ``(inputs, ...)`` or input tensors; H comes from one pass of the unpruned model over them.
        None with ``shards``.
    sparsity : float
        Pruned fraction in [0, 1): k = floor((1 - sparsity) n) kept per row (``scope="row"``) or
        floor((1 - sparsity) m n) in the layer (``scope="layer"``), in every layer (``allocation="uniform"``)
        or as the total of the layers (``"curves"``).
    method : str
        A retention method of :func:`rcprune.solve`; ``**options`` go to it. The masked-objective methods
        ("retention-greedy", "retention-annealing", "retention-genetic", "retention-exact") and the
        baselines ("magnitude", "diagonal") solve the masked objective; "obc", "compensated-swap",
        "compensated-tabu" and "compensated-exact" the compensated one (the error after the refit: pair
        them with ``refit=True``, which then writes the solver's own refit; ``error_refit`` reports it
        either way).
    refit : bool
        Replace the kept weights by their least-squares refit (:func:`rcprune.retention.model.refit`, damped H):
        written into the mask's trainable values, beside the stored originals.
    damping : float
        H + damping * mean(diag H) * I for the solve and the refit.
    layers : list of str, optional
        Module names; default every Conv2d (groups 1) and Linear, stem and classifier included.
    scope : {"row", "layer"}
    seed, time_limit :
        The solver of layer ``name`` gets the seed :func:`rcprune.parallel.layer_seed` (``seed``, ``name``)
        (one per layer, the same in every worker and run); ``time_limit`` is in seconds per layer.
    max_batches : int, optional
        Use only the first calibration batches (of each shard).
    sequential : bool
        Take each layer's H from the network with the layers before it already pruned (and refit), as OBC
        and SparseGPT do, so a layer compensates what the earlier ones lost: one calibration pass per
        layer (``calibration_loader`` must be re-iterable). Default: every H from the unpruned network in
        one pass.
    target : {"dense", "layer"}
        With ``sequential`` and a compensated method: ``"dense"`` (default) minimizes the error against the
        *dense* layer's output on the dense network's inputs, so a layer also makes up for what the layers
        before it lost (the instance is the dense layer refit to the pruned inputs, W~ = B H^-1:
        :func:`rcprune.compensation.dense_target`); ``"layer"`` against this layer's own dense weights on
        the pruned inputs (OBC's and SparseGPT's sequential mode).
    batchnorm : bool
        With ``sequential``: re-estimate the BatchNorm statistics on the calibration data before each layer
        and at the end (:func:`rcprune.torch.batchnorm.reestimate_batchnorm`).
    progress : bool
        tqdm bars for the calibration pass and over the layers (one bar, here, whatever ``n_jobs``).
    n_jobs, backend :
        Solve the layers on ``n_jobs`` joblib workers of ``backend`` (``"loky"``, ``"threading"``, ``"dask"``,
        ``"ray"``: :func:`rcprune.parallel.map_layers`); each worker gets its own layer's W and H only. The
        masks are the serial run's, and are written only once every layer is solved (a layer that fails
        leaves the model unmasked, and the error names it). Not with ``sequential`` (an error: each layer
        needs the ones before it pruned).
    shards : list of iterables, optional
        Calibration shards instead of ``calibration_loader`` (:func:`rcprune.torch.hessians.layer_hessians`):
        summed apart, on the ``n_jobs`` workers, and merged.
    allocation : {"uniform", "curves"}
        How the kept weights are split between the layers: the same sparsity in every layer (default), or
        by the layers' error curves (:mod:`rcprune.torch.retention_curves`; compensated methods only): per
        layer the error after the refit of SparseGPT's mask at ``points`` kept counts (and at the uniform
        one), on the dense model's H (also with ``sequential``), then one count per layer by an exact
        multiple-choice knapsack under the uniform split's total, every row keeping at least one weight (a
        sparsity that leaves less is an error naming the largest one possible); ``report.allocation`` has
        the split, its certified gap on the curves and the uniform split's curve error (never below the
        split's).
    points : int
        Curve points per layer with ``allocation="curves"`` (each one SparseGPT solve and refit).

    Returns
    -------
    RetentionReport

    Notes
    -----
    H is computed on the unpruned model for every layer at once (not sequentially through the pruned
    prefix), so each layer's error is its own reconstruction error for the dense inputs. Masks: on
    ``weight`` only (the bias is not pruned); :func:`rcprune.torch.restore` gives the original weights
    back, bit for bit, with or without refit.
    """
    from rcprune.solve import METHODS, RETENTION_OBJECTIVES

    sparsity = check_fraction(sparsity, "sparsity", allow_zero=True, allow_one=False)
    if not isinstance(method, str) or method not in METHODS["retention"]:
        raise InvalidInstanceError(f"unknown retention method {method!r}; choose one of {list(METHODS['retention'])}")
    damping = check_nonnegative(damping, "damping")
    objective = "masked" if "masked" in RETENTION_OBJECTIVES[method] else "compensated"
    seed, time_limit = check_seed(seed), check_time_limit(time_limit)
    if max_batches is not None:
        max_batches = check_int_option(max_batches, "max_batches", minimum=1)
    check_flag(refit, "refit")
    if scope not in SCOPES:
        raise InvalidInstanceError(f"scope must be one of {SCOPES}, got {scope!r}")
    if allocation not in ("uniform", "curves"):
        raise InvalidInstanceError(f"allocation must be 'uniform' or 'curves', got {allocation!r}")
    if allocation == "curves":
        if objective != "compensated":
            raise InvalidInstanceError(f"allocation='curves' splits the budget by the layers' error after the refit: "
                                       f"give a compensated method ({', '.join(m for m in METHODS['retention'] if 'compensated' in RETENTION_OBJECTIVES[m])}), "
                                       f"not {method!r}")
        points = check_int_option(points, "points", minimum=2)
    names, skipped = retention_layers(model, layers)
    modules = dict(model.named_modules())
    if allocation == "curves":   # before any calibration pass
        check_curve_budget({n: (modules[n].weight.shape[0], modules[n].weight[0].numel()) for n in names},
                           sparsity, scope)
    masked = [n for n in names if is_masked(modules[n])]
    if masked:
        raise InvalidInstanceError(f"layer(s) {masked} already carry a pruning mask: rcprune.torch.restore(model) "
                                   "or bake(model) first")
    check_flag(sequential, "sequential")
    check_flag(batchnorm, "batchnorm")
    if target not in ("dense", "layer"):
        raise InvalidInstanceError(f"target must be 'dense' or 'layer', got {target!r}")
    dense_target_on = sequential and target == "dense" and objective == "compensated"
    if shards is not None and sequential:
        raise InvalidInstanceError("shards= is for the one-pass calibration: sequential=True passes over "
                                   "calibration_loader once per layer")
    if sequential and iter(calibration_loader) is calibration_loader:
        raise InvalidInstanceError("sequential calibration passes over calibration_loader once per layer: give a "
                                   "list or a DataLoader, not an iterator")
    n_jobs, backend = check_n_jobs(n_jobs), check_backend(backend)
    if sequential and n_jobs != 1:
        raise InvalidInstanceError(f"sequential=True takes each layer's H from the network with the layers before it "
                                   f"already pruned, so the layers cannot be solved in parallel: n_jobs={n_jobs} "
                                   "needs sequential=False (or use n_jobs=1)")
    settings = dict(sparsity=sparsity, method=method, scope=scope, damping=damping, objective=objective,
                    time_limit=time_limit, refit=refit, options=options)
    postfix = lambda out: {"error": f"{out[2]['relative_error']:.3g}"}   # noqa: E731
    hessians = layer_sparsity = split = None
    if not sequential or allocation == "curves":   # every H from one pass of the dense model
        hessians, counts = layer_hessians(model, calibration_loader, names, shards=shards, n_jobs=n_jobs if shards
                                          else 1, backend=backend, max_batches=max_batches, progress=progress)
    if allocation == "curves":
        layer_sparsity, split = _curve_split(modules, names, hessians, sparsity, scope, damping, points, n_jobs,
                                             backend, progress)
    if sequential:
        hessians = None
        solved, counts = _sequential(model, calibration_loader, names, modules, settings, seed, max_batches,
                                     batchnorm, dense_target_on, progress, postfix, layer_sparsity)
    else:   # the layers are independent, each task gets its own W and H only
        solved = map_layers(solve_layer, layer_jobs(modules, names, hessians, settings, seed, layer_sparsity), n_jobs=n_jobs,
                            backend=backend, progress=progress, desc=f"{method} layers", postfix=postfix,
                            cost=lambda args: args[1].shape[0] * args[1].shape[1] ** 2)
        for name, (mask, fitted, _) in zip(names, solved):   # every layer solved: only now is the model masked
            _register(modules[name], mask, fitted)
    rows = [row for _, _, row in solved]
    empty = [row["name"] for row in rows if row["kept"] == 0]
    if empty:   # a layer without weights outputs its bias whatever the input: say so, it is rarely meant
        warnings.warn(f"retention_prune keeps no weight of layer(s) {empty} at sparsity {sparsity:g} ({allocation} "
                      "split): their outputs no longer depend on the input (a smaller sparsity, or allocation='curves', "
                      "which moves weights between the layers, can keep some)", RuntimeWarning, stacklevel=2)
    return RetentionReport(layers=tuple(rows), method=method, sparsity=sparsity, scope=scope, damping=float(damping),
                           refit=bool(refit), samples=counts[names[0]], skipped=tuple(skipped), allocation=split)


def _curve_split(modules, names, hessians, sparsity, scope, damping, points, n_jobs, backend, progress):
    """Per layer its sparsity under the curves' allocation, and the allocation's record."""
    start = time.perf_counter()
    weights = {name: _dense_weights(modules[name]) for name in names}
    curves = retention_curves(weights, hessians, sparsity=sparsity, points=points, scope=scope, damping=damping,
                              n_jobs=n_jobs, backend=backend, progress=progress)
    shapes = {name: w.shape for name, w in weights.items()}
    layer_sparsity, alloc = allocate_retention(curves, shapes, sparsity, scope)
    uniform = uniform_error(curves, shapes, sparsity, scope)
    return layer_sparsity, {"rule": "curves", "points": points, "counts": dict(alloc.counts), "sparsity": layer_sparsity,
                            "error": alloc.error, "lower_bound": alloc.lower_bound, "uniform_error": uniform,
                            "curves": {n: (c.tolist(), e.tolist()) for n, (c, e) in curves.items()},
                            "seconds": time.perf_counter() - start}


def restore_original(model: nn.Module, report: RetentionReport | None = None) -> nn.Module:
    """The same as :func:`rcprune.torch.restore` (the originals are kept beside the refit values);
    ``report`` is ignored. Kept for older code."""
    return restore(model)
