"""One call from a model to a pruned model: extract, solve, mask, refit, fine-tune, compact.

:func:`prune` chains the adapter's steps on a copy of the model (the user's model and its weights are
never touched) and returns the pruned model with a :class:`PruneReport` of every step. Each step stays
available on its own (:func:`rcprune.torch.extract`, :func:`rcprune.solve`, :func:`rcprune.torch.apply`,
:func:`rcprune.torch.ls_refit`, :func:`rcprune.torch.finetune`, :func:`rcprune.torch.compact`).

>>> import torch
>>> from rcprune.torch.models import cifar_resnet
>>> model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4).eval()
>>> small, report = prune(model, torch.randn(1, 1, 8, 8), sparsity=0.8)
>>> report.kept_weights <= report.budget, report.macs_after < report.macs_before
(True, True)
"""
from __future__ import annotations

import copy
import time
import warnings

import numpy as np
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from rcprune.solvers.network.greedy import refill_columns
from rcprune.network.cleanup import output_groups
from rcprune.network.floor import channel_floor
from rcprune.network.granularity import check_method, coarsen, least_spend, refine
from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.parallel import check_backend, check_n_jobs
from rcprune.result import SolveResult, make_result
from rcprune.validation import (InvalidInstanceError, check_choice, check_flag, check_fraction, check_int_option,
                                check_real_option)

from rcprune.torch.compact import CompactReport, compact as compact_model
from rcprune.torch.compact_finetune import compacted_for_training, fold_batchnorms, needs_masked_model
from rcprune.torch.batches import check_loader, check_reusable
from rcprune.torch.extract import Extraction, extract
from rcprune.torch.finetune import finetune as finetune_model
from rcprune.torch.latency_table import LatencyTable, latency_table as build_latency_table
from rcprune.torch.latency import time_forms
from rcprune.torch.masking import apply, originals_under_masks, restore
from rcprune.torch.batchnorm import reestimate_batchnorm
from rcprune.torch.refit import RefitReport, ls_refit
from rcprune.torch.compensate import REFIT_ONLY, CompensationReport, compensate
from rcprune.torch.hessian_scores import hessian_scores
from rcprune.torch.input_dependence import responds_to_input
from rcprune.torch.connected_solve import next_budget, solve_best_connected, solve_connected, spend_fully
from rcprune.torch.error_curves import error_curves
from rcprune.network.curve_allocation import allocate_by_curves
from rcprune.compensation import DEFAULT_DAMPING

__all__ = ["prune", "PruneReport", "budgeted_instance", "masks_on_original", "next_budget", "BUDGETS", "UnreachableTargetError"]

BUDGETS = ("weights", "macs", "latency")
ALLOCATIONS = ("scores", "curves")
CURVE_POINTS = 32
CURVE_ROUNDS = 3
CURVE_FILL_TOL = 0.005   # a round that keeps within 0.5% of the budget is final


@dataclass
class PruneReport:
    """What :func:`prune` did.

    Attributes
    ----------
    extraction : Extraction
        The traced instance and the mapping back to the (copied) model.
    result : SolveResult
        The network solve (cost, lower bound and certified gap when ``bound=True``, runtime, ...).
    budget : int or float
        The budget of the prunable layers in the measure's units (kept weights, MACs, milliseconds).
    kept_weights : int
        What the solution keeps.
    measure, spend : str, float
        What the budget counts and what the solution spends of it.
    predicted_ms, dense_ms : float or None
        With a latency budget: the table's prediction for the compacted model, and the measured dense
        model.
    macs_before, macs_after, weights_before, weights_after : int or None
        From :func:`rcprune.torch.compact` (None when ``compact=False``).
    refit : RefitReport or None
    compensation : CompensationReport or None
        With ``calibration``: per layer, the output error before and after (:func:`rcprune.torch.compensate`).
    history : list of dict
        Fine-tuning epochs (empty without fine-tuning).
    finetuned : "compacted", "masked" or None
        Which model was fine-tuned (:mod:`rcprune.torch.compact_finetune`); None without fine-tuning.
    seconds : dict
        Wall time of each step: ``extract`` (with the copy of the model), ``budget`` (the instance under the
        budget), ``latency_table``, ``solve``, ``mask``, ``refit``, ``compensate``, ``finetune``,
        ``compact``, those that ran.
    """

    extraction: Extraction
    result: SolveResult
    budget: int
    kept_weights: int
    macs_before: int | None = None
    macs_after: int | None = None
    weights_before: int | None = None
    weights_after: int | None = None
    refit: RefitReport | None = None
    compensation: CompensationReport | None = None
    history: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    compacted: CompactReport | None = None
    measure: str = "weights"
    spend: float | None = None
    predicted_ms: float | None = None
    dense_ms: float | None = None
    finetuned: str | None = None

    @property
    def solution(self) -> NetworkSolution:
        return self.result.solution

    def summary(self) -> dict[str, Any]:
        """JSON-friendly: the solve summary, counts, MACs, last fine-tune epoch and step times."""
        return {"solve": self.result.summary(), "measure": self.measure, "budget": self.budget, "spend": self.spend,
                "predicted_ms": self.predicted_ms, "dense_ms": self.dense_ms, "kept_weights": self.kept_weights,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "weights_before": self.weights_before, "weights_after": self.weights_after,
                "refit_layers": len(self.refit.layers) if self.refit else 0,
                "compensation": self.compensation.medians() if self.compensation else None,
                "finetune": self.history[-1] if self.history else None, "seconds": dict(self.seconds)}


DEFAULT_FLOOR = 0.25   # prune's channel floor under MACs and latency budgets (docs/pareto-mnist.md)


CALIBRATION_TOL = 0.02  # a calibrated latency is accepted within 2% of the target
CALIBRATION_REPEATS = 20
CALIBRATION_MAX_ROUNDS = 10


class UnreachableTargetError(InvalidInstanceError):
    """A MACs or latency target below what keeping only the fixed minimum (protected layers, a channel
    floor) costs; the message names the best reachable value."""


def _reach(measured: NetworkInstance, granularity: str) -> tuple[float, float]:
    """(full spend, least spend) of the prunable layers, the least at ``granularity``; ``measured`` has
    the full spend as its budget, so coarsening it cannot fail."""
    return float(measured.full_spend.sum()), least_spend(measured, granularity)


def masks_on_original(model: nn.Module, calibration) -> None:
    """Put the original weights back under the masks of a model ``prune(calibration=...)`` refit
    (:func:`rcprune.torch.masking.originals_under_masks`), and re-estimate its BatchNorm statistics on
    ``calibration``: where a fine-tune follows, this start fine-tunes better than the refit one
    (``prune(finetune=)`` does it unless told otherwise)."""
    originals_under_masks(model)
    reestimate_batchnorm(model, calibration)


def budgeted_instance(extraction: Extraction, budget: str, *, sparsity: float | None = None,
                      speedup: float | None = None, latency_ms: float | None = None, table=None,
                      granularity: str = "column", min_channels: float = 0.0) -> NetworkInstance:
    """The extraction's instance under a ``budget`` of ``"weights"``, ``"macs"`` or ``"latency"``
    (``table`` a :class:`rcprune.torch.latency_table.LatencyTable`), sized by ``sparsity`` (of the
    prunable spend), ``speedup`` (of the whole model) or ``latency_ms`` (predicted whole model).

    ``min_channels`` fixes that share of every prunable channel group (:func:`rcprune.network.floor.channel_floor`).
    A target below the dense model (speedup under 1) or beyond what keeping only the protected
    minimum (and the floor) reaches is an :class:`InvalidInstanceError` naming the best reachable value."""
    instance = channel_floor(extraction.instance, min_channels)
    minimum = "the protected minimum" + (f" and the channel floor of {min_channels:g}" if min_channels else "")
    if budget == "weights":
        return instance.replace(sparsity=sparsity)
    if speedup is not None:
        speedup = check_real_option(speedup, "speedup")
        if speedup < 1:
            raise InvalidInstanceError(f"speedup must be at least 1 (the dense model), got {speedup:g}")
    if budget == "macs":
        measured = instance.replace(measure="macs", density=1.0)
        full, least = _reach(measured, granularity)
        target = full / speedup if speedup is not None else (1 - sparsity) * full
        if target < least:
            raise UnreachableTargetError(
                f"the MACs target {target:.6g} is unreachable: keeping only {minimum} needs {least:.6g} "
                f"MACs, a speedup of at most {full / least if least else float('inf'):.2f}x")
        return measured.replace(budget=target)
    if not isinstance(table, LatencyTable):
        raise InvalidInstanceError(f"budget='latency' needs a rcprune.torch.LatencyTable "
                                   f"(rcprune.torch.latency_table), got {type(table).__name__}")
    measure = table.measure(extraction, granularity=granularity)
    measured = instance.replace(measure=measure, density=1.0)
    full, least = _reach(measured, granularity)
    if latency_ms is not None:
        total = check_real_option(latency_ms, "latency_ms")
    elif speedup is not None:
        total = table.dense_ms / speedup
    else:
        total = measure.fixed + (1 - sparsity) * full
    fastest = measure.fixed + least
    if total - measure.fixed < least:
        raise UnreachableTargetError(
            f"the latency target {total:.4g} ms is unreachable on {table.metadata.get('device', 'this device')}: "
            f"keeping only {minimum} is predicted at {fastest:.4g} ms (the fixed part alone "
            f"{measure.fixed:.4g} ms), a speedup of at most {table.dense_ms / fastest:.2f}x over the dense "
            f"{table.dense_ms:.4g} ms")
    return measured.replace(budget=total - measure.fixed)


def _measured_ms(work: nn.Module, x, ext: Extraction, table: LatencyTable, solution, partial: str) -> float:
    """The compacted ``solution``'s latency measured against the dense ``work`` in one interleaved run,
    each in its faster deployable form (as it is, or BatchNorm-fused in channels-last:
    :func:`rcprune.torch.latency.time_forms`), in the table's milliseconds (``table.dense_ms * small /
    dense``, so machine load cancels)."""
    probe = copy.deepcopy(work)
    apply(probe, solution, ext)
    small, _ = compact_model(probe.eval(), solution, ext, partial=partial, latency_table=table)
    ms = time_forms({"dense": work, "small": small}, x, CALIBRATION_REPEATS)
    return table.dense_ms * ms["small"]["ms"] / ms["dense"]["ms"]


def _calibrate(work, x, ext, table, first, granularity, solve_at, partial, rounds):
    """Measure the compacted solution and correct the table's budget by the measurements
    (:func:`next_budget`), re-solving (``solve_at``: instance -> solve) up to ``rounds`` times. Returns the solve of the kept round (the
    largest predicted spend measured within the target's 2%, else the fastest measured) and the rounds'
    records."""
    fixed = first[0].measure.fixed
    target = first[0].budget + fixed
    least = least_spend(first[0], granularity)   # what the searched space can reach
    current, rounds_log, solves = first, [], []
    for _ in range(rounds):
        inst, _, _, clean, _ = current
        solution = refine(inst, clean, granularity)
        measured = _measured_ms(work, x, ext, table, solution, partial)
        predicted = fixed + float(inst.evaluate(solution).spend)
        rounds_log.append({"budget_ms": inst.budget + fixed, "predicted_ms": predicted, "measured_ms": measured})
        solves.append(current)
        if abs(measured / target - 1) <= CALIBRATION_TOL:
            break
        budget = next_budget(rounds_log, target, fixed, least, float(inst.full_spend.sum()))
        if any(abs(budget + fixed - r["budget_ms"]) <= 1e-9 * target for r in rounds_log):
            break
        try:
            current = solve_at(inst.replace(budget=budget))
        except InvalidInstanceError:   # the corrected budget cannot be met (reconnecting does not fit): stop
            break
    ok = [i for i, r in enumerate(rounds_log) if r["measured_ms"] <= target * (1 + CALIBRATION_TOL)]
    pick = max(ok, key=lambda i: rounds_log[i]["predicted_ms"]) if ok else \
        min(range(len(rounds_log)), key=lambda i: rounds_log[i]["measured_ms"])
    rounds_log[pick]["kept"] = True
    return solves[pick], rounds_log


def _curve_options(work, ext, instance: NetworkInstance, calibration, damping, granularity: str):
    """Per layer the curves' options ``(counts, errors)`` (at least one entry, at least the layer's minimum)
    and, under a measure other than kept entries, each option's spend at its kept shape (columns rounded up
    to whole input channels outside the column granularity)."""
    fixed_rows = {li.name: instance.group(li.output).protected for li in instance.layers}
    priced = not instance.measure.is_count
    curves = error_curves(work, ext, calibration, points=CURVE_POINTS, damping=damping, fixed_rows=fixed_rows,
                          shapes=priced)
    options, spends = {}, {}
    for l, li in enumerate(instance.layers):
        k, e, *shape = curves[li.name]
        if priced:   # columns in whole input channels outside the column space: counted and priced so
            r, c = shape
            c = c if granularity == "column" else np.minimum(-(-c // li.block) * li.block, li.cols)
            k = r * c
        ok = (k > 0) & (k >= instance.min_counts[l])
        if priced:   # the fixed core (protected or floor channels) as a shape, not only as a count
            fixed_cols = li.block * sum(len(instance.group(g).floor) for g, _ in li.inputs)
            ok &= (r >= len(instance.group(li.output).fixed)) & (c >= fixed_cols)
            options[li.name] = (k[ok], e[ok])
            spends[li.name] = np.asarray(instance.measure.spend(li.name, r[ok], c[ok]), dtype=np.float64)
        else:
            options[li.name] = (k[ok], e[ok])
    return options, (spends or None)


def _solve_by_curves(instance: NetworkInstance, curve_options: dict, spends: dict | None, granularity: str,
                     method: str, options: dict):
    """:func:`solve_connected` under layer budgets from the layers' error curves (see
    ``prune(allocation="curves")``), and the allocation's record. The solver spends a little less than the
    plan when no row-and-column shape fills a layer's budget exactly, so up to ``CURVE_ROUNDS`` allocations
    are made, each asking for the previous shortfall on top (the global budget still binds); the round that
    spends the most is kept, and what it leaves buys columns of its kept rows under the global budget alone."""
    target = float(instance.effective_budget)
    most = sum(float(np.max(spends[n] if spends else k)) for n, (k, _) in curve_options.items())
    ask, best, rounds = target, None, []
    for _ in range(CURVE_ROUNDS):
        alloc = allocate_by_curves(curve_options, int(ask) if spends is None else ask, spends=spends)
        solved = solve_connected(instance.replace(layer_budgets=alloc.counts), granularity, method, options)
        spent = float(solved[0].evaluate(refine(solved[0], solved[3], granularity)).spend)
        rounds.append({"asked": ask, "spent": spent, "error": alloc.error, "lower_bound": alloc.lower_bound})
        if best is None or spent > best[2]:
            best = (solved, alloc, spent)
        short = target - spent
        if short <= CURVE_FILL_TOL * target or ask >= most:
            break
        ask = min(ask + short, most)
    (capped, _, found, clean, protected), alloc, spent = best
    # the caps are the curves' plan, not a constraint of the model: what the solver could not place within
    # them buys columns of the kept rows under the global budget alone
    free = capped.replace(layer_budgets=None)   # keeps the groups protected to reconnect
    searched = coarsen(free, granularity)
    clean = refill_columns(searched, clean)
    record = {"error": alloc.error, "lower_bound": alloc.lower_bound, "layer_budgets": alloc.counts,
              "points": CURVE_POINTS, "rounds": rounds,
              "refilled": float(free.evaluate(refine(free, clean, granularity)).spend) - spent}
    return (free, searched, found, clean, protected), record


def _warn_constant(instance: NetworkInstance, solution: NetworkSolution) -> None:
    """Warn that the masked model computes a constant, naming what its output layers keep."""
    ends = set(output_groups(instance))
    outputs = [li for li in instance.layers if li.output in ends]
    kept = ", ".join(f"{li.name} keeps {int(solution[li.name].cols.sum())} of {li.cols} columns" for li in outputs)
    warnings.warn(f"the pruned model's output no longer depends on its input (it computes a constant), although "
                  f"the dense model's does ({kept}): ask for a smaller sparsity, or keep more with "
                  "min_channels= or protect=", RuntimeWarning, stacklevel=3)


def prune(model: nn.Module, example_inputs, sparsity: float | None = None, *, budget: str = "weights",
          speedup: float | None = None, latency_ms: float | None = None, granularity: str = "column",
          latency_table=None, device: str = "cpu", method: str | None = None,
          scores: str | Callable | None = None, weighting: Any = "none", protect: Sequence[str] = (),
          min_channels: float | None = None, calibrate: int = 0, seed: int = 0,
          time_limit: float | None = None, bound: bool = False, solver_options: dict | None = None,
          refit=None, calibration=None, layer_method: str | None = None, damping: float = DEFAULT_DAMPING,
          finetune: dict | None = None, finetune_from_refit: bool = False, compact: bool = True,
          partial: str = "auto", progress: bool = False, sequential: bool = True, n_jobs: int = 1,
          backend: str = "loky", allocation: str | None = None,
          ) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of ``model`` under a budget on its weights, MACs or measured latency.

    Parameters
    ----------
    model : nn.Module
        Left unchanged (the work happens on a deep copy).
    example_inputs : Tensor or tuple of Tensors
        For tracing and shapes (:func:`rcprune.torch.extract`).
    sparsity : float, optional
        Fraction of the budgeted quantity to remove, in [0, 1) (default 0.9 for weights and MACs).
    budget : "weights", "macs" or "latency"
        What the budget counts (:mod:`rcprune.network.measure`): kept conv + linear weights; their
        multiply-adds per sample; or the latency measured on ``device`` (a HALP-style table of each
        layer's compacted forms, :func:`rcprune.torch.latency_table`, cached on disk).
    speedup : float, optional
        With ``"macs"`` or ``"latency"``: the whole model must run ``speedup`` times faster than the
        dense one (MACs: the prunable MACs shrink by that factor; latency: the table's prediction of
        the whole compacted model). An unreachable target is an error naming the best reachable one.
    latency_ms : float, optional
        With ``"latency"``: the predicted whole-model milliseconds instead of a speedup.
    granularity : "column", "channel" or "group"
        The column sets a layer may keep (:mod:`rcprune.network.granularity`): any columns; whole input
        channels, chosen per layer; or Torch-Pruning's space exactly, one channel set per channel group
        kept by all its producers and read whole by all its consumers (compacted residual adds need no
        index gathers), so comparing there compares the optimizers alone.
    latency_table : LatencyTable, optional
        A table built before (else one is built, or loaded from the cache, for ``example_inputs``).
    device : str
        Where latency is measured.
    method : str, optional
        A network method of :func:`rcprune.solve` (``"network-greedy"``, ``"network-allocation"``,
        ``"network-annealing"``, ``"network-group"``, ...); ``seed``, ``time_limit`` and ``solver_options``
        go to it. The group space is searched by ``"network-group"`` only (another method with
        ``granularity="group"`` is an error naming it); None picks ``"network-group"`` there and
        ``"network-greedy"`` elsewhere.
    scores, weighting, protect
        The objective (:func:`rcprune.torch.extract`); weighting ``"none"`` fine-tuned best on the
        digits ResNet (``docs/report-card.md``). ``scores="hessian"`` (the default with ``calibration``)
        scores w_ij^2 H_jj g_i on the calibration data (:mod:`rcprune.torch.hessian_scores`); otherwise
        the default is ``"l1"``.
    bound : bool
        Attach the network lower bound, so ``report.result.gap`` is a certified gap (with
        ``granularity="channel"`` or ``"group"`` the bound holds in the channel space, which holds the
        group space, only: it is reported as
        ``report.result.info["lower_bound_in_granularity"]``).
    min_channels : float, optional
        Every prunable channel group keeps at least this share of its channels, its top ones by score,
        and every consumer reads them (:func:`rcprune.network.floor.channel_floor`: a channel-pruned core,
        Torch-Pruning's per-layer cap as a constraint). Under a MACs or latency budget the importance
        scores alone remove whole layers, which fine-tuning cannot recover (``docs/pareto-mnist.md``), so
        the default (None) is a floor of 0.25 there, halved until the target is reachable (the floor
        used is ``report.result.info["min_channels"]``), and none under a weights budget.
    calibrate : int
        With ``budget="latency"`` on the CPU: up to this many rounds of compacting the solution, measuring
        it against the dense model in one interleaved run (each in its faster form: as it is, or
        BatchNorm-fused in channels-last), and correcting the table's budget by the measurements
        (rescaled by the last misprediction, then the secant between rounds on both sides of the target:
        :func:`next_budget`), then solving again (``info["calibration"]`` lists the rounds; the kept one
        is the largest measured within 2% of the target, else the fastest). The table is an interpolation
        of per-layer timings; measured on the MNIST ResNet-20 it over-predicted small channel-pruned models
        by 5-9%, so the solver paid for latency it did not spend. 0 (default) trusts the table.

    A solution that leaves the output without any path from the input (a constant model: the L1 scores
    do not see that every later layer depends on the stem) is solved again with the cut group nearest the
    input protected (in the group space: its best channel fixed), until connected
    (``report.result.info["protected_to_connect"]`` lists them).
    The solver's kept rows that no consumer reads are dropped before masking
    (:func:`rcprune.network.cleanup.drop_unread_rows`: the same function, less work) and the budget they
    free buys columns of the kept rows (:func:`rcprune.solvers.network.greedy.refill_columns`); the
    result then reports the cost of what is kept and ``info["unread_rows_dropped"]``.
    ``"network-greedy"`` (unless ``solver_options`` sets ``drop_unread``) is run as the instance's
    objective counts kept rows and, where that solve kept unread rows, reconnected or under-spent, again
    comparing its candidates with the unread rows dropped (from the instance and, where the first solve
    reconnected, from its reconnected instance too); the cheapest cleaned solution is kept
    (:func:`rcprune.torch.connected_solve.solve_best_connected`). When what is kept still leaves more
    than 2% of the budget unspent, the solve is repeated at up to 4 larger solver budgets and the cheapest
    cleaned solution within the asked budget is kept (``info["respend"]`` lists the rounds; measured on
    torchvision ResNet-50 at 50% removed: 61% of the budget kept before these two steps, 100% after,
    ``docs/architectures.md``).
    A masked model whose output no longer depends on its input while the dense model's does (one kept
    classifier column reading a channel a ReLU zeroes: connected, yet constant) gets a ``RuntimeWarning``
    naming what the output layers keep (:func:`rcprune.torch.input_dependence.responds_to_input`, two
    forward passes of each).
    refit : iterable of batches, optional
        Calibration data for :func:`rcprune.torch.ls_refit` (the older ridge refit of the network's kept
        weights, columns unchanged, no BatchNorm re-estimation); not together with ``calibration``.
    calibration : list of batches or DataLoader, optional
        Data-aware pruning without training (:func:`rcprune.torch.compensate`): the network budget is
        allocated on ``"hessian"`` scores, then layer by layer, with each layer's inputs taken from the
        network pruned so far, ``layer_method`` re-chooses the layer's columns on the compensated
        objective (the output error after the refit, against the dense layer), the kept weights are refit
        (reversibly) and the bias corrected, and the BatchNorm statistics are re-estimated;
        ``report.compensation`` lists the layers.
    layer_method : str, optional
        A compensated matrix method or ``"refit"`` (keep the network's columns); default
        ``"compensated-rc-tabu"`` on layers of at most 1152 alive columns, block structured-OBS on larger
        ones (:func:`rcprune.torch.compensate`). A latency budget and ``granularity`` other than ``"column"``
        allow ``"refit"`` only (their column structure is priced), which is then the default.
    damping : float
        The compensation's H + damping * mean(diag H) * I.
    progress : bool
        tqdm bars: the network solve's (methods that have one), the compensated layers' (with
        ``calibration``) and the calibration passes'.
    sequential, n_jobs, backend :
        With ``calibration``: ``sequential=False`` takes every layer's statistics from one pass of the
        masked model and compensates the layers independently, on ``n_jobs`` joblib workers of ``backend``
        (``"loky"``, ``"threading"``, ``"dask"``, ``"ray"``; :func:`rcprune.torch.compensate`); the default
        compensates layer by layer, serially. ``n_jobs`` other than 1 needs ``calibration`` and
        ``sequential=False``.
    allocation : "scores", "curves" or None
        How the budget is split between the layers. ``"scores"``: by the network solver on the importance
        scores alone. None (default): ``"curves"`` with ``calibration`` and a kept-weights budget, else
        ``"scores"``. ``"curves"`` (needs ``calibration``): each layer's error after the refit at
        32 kept counts (:func:`rcprune.torch.error_curves.error_curves`, one structured-OBS elimination per
        layer on the dense model's calibration inputs; under MACs or latency each point priced at its kept
        shape), one point per layer by an exact multiple-choice knapsack under the global budget
        (:func:`rcprune.network.curve_allocation.allocate_by_curves`; every layer keeps at least 1/32 of its
        entries), given to the network solver as layer budgets (up to 3 rounds, each asking for what the
        last one left unspent; what is still left then buys columns of the kept rows);
        ``info["curve_allocation"]`` holds the allocation's summed error, its certified lower bound (of the
        curves' knapsack) and the rounds. Measured on the MNIST ResNet-20 (``rcprune bench zeroshot``, 3
        seeds): at 90% / 93% removed, zero-shot 97.1 / 96.3% (score allocation 94.9 / 92.8%) and fine-tuned
        97.7 / 97.8% (score allocation 97.1 / 96.4%, magnitude RC 97.2 / 96.6%); at 50% 98.33% against
        98.50% (docs/report-card.md, section 17). It costs one structured-OBS elimination per layer (30 s
        on that model, about 2 min on a ResNet-18). Under latency budgets it did not beat the scores there
        (the channel floor decides the model), so it is not the default.
    finetune : dict, optional
        Keyword arguments of :func:`rcprune.torch.finetune` (``train_loader`` and ``epochs`` required);
        masks stay fixed, so pruned weights stay zero. With ``calibration`` the fine-tune starts from the
        data-aware masks on the *original* weights (BatchNorm re-estimated), unless
        ``finetune_from_refit=True``: on the MNIST ResNet-20 the refit start fine-tuned no better at 90% and
        0.9 points worse at 93% (``rcprune bench zeroshot``, rows data-aware-rc and selection-only).
        With ``compact=True``, where every weight of the compacted model is a kept weight (whole-channel
        solutions: ``granularity="group"`` or ``"channel"``; partial channels gathered by ``im2col``), the
        compacted model is fine-tuned instead of the masked one, its BatchNorms folded afterwards: the same
        training up to float rounding, at the compacted model's cost (:mod:`rcprune.torch.compact_finetune`;
        not with the options that need the masked model: ``regenerate``, ``sparse_training``,
        ``checkpoint``, ..., nor under ``torch.distributed``). ``PruneReport.finetuned`` says which.
    compact : bool
        Return the physically smaller model (:func:`rcprune.torch.compact`, ``partial`` mode) in eval
        mode; ``False`` returns the masked copy (reversible with :func:`rcprune.torch.restore`).

    Returns
    -------
    (nn.Module, PruneReport)
    """
    if budget not in BUDGETS:
        raise InvalidInstanceError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    method = check_method(granularity, method)
    targets = [k for k, v in (("sparsity", sparsity), ("speedup", speedup), ("latency_ms", latency_ms)) if v is not None]
    if len(targets) > 1:
        raise InvalidInstanceError(f"give one of sparsity, speedup or latency_ms; got {', '.join(targets)}")
    if speedup is not None and budget == "weights":
        raise InvalidInstanceError("speedup needs budget='macs' or budget='latency' (kept weights do not say "
                                   "how fast a model runs)")
    if latency_ms is not None and budget != "latency":
        raise InvalidInstanceError("latency_ms needs budget='latency'")
    if latency_table is not None and not isinstance(latency_table, LatencyTable):
        raise InvalidInstanceError(f"latency_table must be a rcprune.torch.LatencyTable, got "
                                   f"{type(latency_table).__name__}")
    if budget == "latency" and not targets:
        raise InvalidInstanceError("budget='latency' needs a target: speedup=, latency_ms= or sparsity=")
    calibrate = check_int_option(calibrate, "calibrate", minimum=0)
    if calibrate > CALIBRATION_MAX_ROUNDS:   # past a few rounds timing noise, not the table, moves the budget
        raise InvalidInstanceError(f"calibrate must be at most {CALIBRATION_MAX_ROUNDS} rounds, got {calibrate}")
    if calibrate and (budget != "latency" or device != "cpu" or not isinstance(example_inputs, torch.Tensor)):
        raise InvalidInstanceError("calibrate measures compacted models on the CPU against the table: it needs "
                                   "budget='latency', device='cpu' and one example input tensor")
    if sparsity is None and not targets:
        sparsity = 0.9
    if sparsity is not None:
        sparsity = check_fraction(sparsity, "sparsity", allow_zero=True, allow_one=False)
    if finetune is not None and not (isinstance(finetune, dict) and {"train_loader", "epochs"} <= finetune.keys()):
        raise InvalidInstanceError("finetune must be a dict of rcprune.torch.finetune arguments with at least "
                                   "'train_loader' and 'epochs'")
    if solver_options is not None and not isinstance(solver_options, dict):
        raise InvalidInstanceError(f"solver_options must be a dict, got {type(solver_options).__name__}")
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if refit is not None:
        check_loader(refit, "refit (calibration batches)")
    if calibration is not None:
        check_reusable(calibration, "calibration", "compensation")
        if refit is not None:
            raise InvalidInstanceError("give calibration= (data-aware selection, refit and BatchNorm re-estimation) "
                                       "or refit= (the ridge refit alone), not both")
        structured = budget == "latency" or granularity != "column"
        if structured and layer_method not in (None, REFIT_ONLY):
            raise InvalidInstanceError(f"layer_method={layer_method!r} re-chooses columns, which a latency budget or "
                                       f"granularity={granularity!r} prices by their structure: use "
                                       f"layer_method={REFIT_ONLY!r} (the default there)")
        layer_method = REFIT_ONLY if structured else layer_method
    elif layer_method is not None:
        raise InvalidInstanceError("layer_method needs calibration= (the data the layers are compensated on)")
    if allocation is None:
        allocation = "curves" if calibration is not None and budget == "weights" else "scores"
    check_choice(allocation, "allocation", ALLOCATIONS)
    if allocation == "curves" and calibration is None:
        raise InvalidInstanceError("allocation='curves' splits the budget by the layers' errors on calibration "
                                   "data: it needs calibration=")
    if scores is None:
        scores = "hessian" if calibration is not None else "l1"
    if isinstance(scores, str) and scores == "hessian" and calibration is None:
        raise InvalidInstanceError("scores='hessian' needs calibration= (the data H comes from)")
    sequential = check_flag(sequential, "sequential")
    n_jobs, backend = check_n_jobs(n_jobs), check_backend(backend)
    if n_jobs != 1 and (calibration is None or sequential):
        raise InvalidInstanceError(f"n_jobs={n_jobs} parallelizes the compensation of the layers: it needs "
                                   "calibration= and sequential=False (sequential compensation runs layer by layer)")
    compact = check_flag(compact, "compact")
    finetune_from_refit = check_flag(finetune_from_refit, "finetune_from_refit")
    seconds = {}
    t = time.perf_counter()
    work = copy.deepcopy(model).eval()
    if isinstance(scores, str) and scores == "hessian":
        plain = extract(work, example_inputs, protect=protect, sparsity=0.0)
        table_of_scores = hessian_scores(work, plain, calibration)
        scores = lambda name, weight: table_of_scores[name]   # noqa: E731
    ext = extract(work, example_inputs, scores=scores, protect=protect, weighting=weighting,
                  sparsity=sparsity if budget == "weights" else 0.0)
    seconds["extract"] = time.perf_counter() - t
    table = None
    if budget == "latency":
        t = time.perf_counter()
        table = latency_table if latency_table is not None else build_latency_table(
            work, example_inputs, extraction=ext, device=device)
        seconds["latency_table"] = time.perf_counter() - t
    t = time.perf_counter()
    floors = [min_channels] if min_channels is not None else \
        [0.0] if budget == "weights" else [DEFAULT_FLOOR / 2 ** k for k in range(4)] + [0.0]
    for floor in floors:
        try:
            instance = budgeted_instance(ext, budget, sparsity=sparsity, speedup=speedup, latency_ms=latency_ms,
                                         table=table, granularity=granularity, min_channels=floor)
            break
        except UnreachableTargetError:
            if floor == floors[-1]:
                raise
    seconds["budget"] = time.perf_counter() - t
    t = time.perf_counter()
    options = {"seed": seed, "time_limit": time_limit, "bound": bound, "progress": check_flag(progress, "progress"),
               **(solver_options or {})}
    records = []   # (solve, its allocation or re-spend record), one per budget tried
    if allocation == "curves":
        curve_options, spends = _curve_options(work, ext, instance, calibration, damping, granularity)

        def solve_at(inst):
            records.append(_solve_by_curves(inst, curve_options, spends, granularity, method, options))
            return records[-1][0]
    else:
        variants = [{}]
        if method == "network-greedy" and "drop_unread" not in options:
            variants = [{"drop_unread": False}, {"drop_unread": True}]

        def solve_at(inst):
            first = solve_best_connected(inst, granularity, method, options, variants)
            # the larger budgets are solved the way that won (a greedy's info says which)
            won = {k: first[2].info[k] for k in variants[0] if k in first[2].info}
            again = lambda larger: solve_connected(larger, granularity, method, {**options, **won})  # noqa: E731
            records.append(spend_fully(inst, first, again, granularity))
            return records[-1][0]
    solved = solve_at(instance)
    rounds = None
    if calibrate:
        solved, rounds = _calibrate(work, example_inputs, ext, table, solved, granularity, solve_at,
                                         partial, calibrate)   # work is still the dense copy here
    instance, searched, found, clean, connected = solved
    dropped = sum(int(found.solution[n].rows.sum() - clean[n].rows.sum()) for n in instance.layer_names)
    info = dict(found.info, unread_rows_dropped=dropped, protected_to_connect=connected, min_channels=floor)
    if rounds is not None:
        info["calibration"] = rounds
    record = next(record for each, record in records if each is solved)
    if allocation == "curves":
        info["curve_allocation"] = record
    elif record:
        info["respend"] = record
    lower_bound = found.lower_bound
    if granularity != "column":  # a bound of the restricted space is no bound of the full one: kept apart
        info |= {"granularity": granularity, "lower_bound_in_granularity": lower_bound}
        lower_bound = None
    result = make_result(instance, refine(instance, clean, granularity), method=found.method,
                         runtime=found.runtime, iterations=found.iterations, seed=seed, lower_bound=lower_bound,
                         timed_out=found.status == "time_limit", trace=found.trace, info=info)
    seconds["solve"] = time.perf_counter() - t
    t = time.perf_counter()
    apply(work, result.solution, ext)
    if not responds_to_input(work, example_inputs):
        restore(work)   # the dense weights are still there under the masks: is it the pruning's doing?
        dense_responds = responds_to_input(work, example_inputs)
        apply(work, result.solution, ext)
        if dense_responds:
            _warn_constant(instance, result.solution)
    seconds["mask"] = time.perf_counter() - t
    report = PruneReport(ext, result, instance.effective_budget, int(result.kept_count), seconds=seconds,
                         measure=instance.measure.name, spend=float(result.evaluation.spend),
                         predicted_ms=(instance.measure.fixed + float(result.evaluation.spend)) if table else None,
                         dense_ms=table.dense_ms if table is not None else None)
    if refit is not None:
        t = time.perf_counter()
        report.refit = ls_refit(work, result.solution, refit, extraction=ext)
        seconds["refit"] = time.perf_counter() - t
    if calibration is not None:
        t = time.perf_counter()
        final, report.compensation = compensate(work, result.solution, calibration, extraction=ext,
                                                layer_method=layer_method, damping=damping, seed=seed,
                                                time_limit=time_limit, progress=check_flag(progress, "progress"),
                                                sequential=sequential, n_jobs=n_jobs, backend=backend)
        report.result = result = make_result(instance, final, method=found.method, runtime=found.runtime,
                                    iterations=found.iterations, seed=seed, lower_bound=result.lower_bound,
                                    timed_out=found.status == "time_limit", trace=found.trace,
                                    info=dict(info, compensated=True))
        report.kept_weights = int(report.result.kept_count)
        report.spend = float(report.result.evaluation.spend)
        seconds["compensate"] = time.perf_counter() - t
    if finetune is not None:
        t = time.perf_counter()
        if calibration is not None and not finetune_from_refit:
            # measured (docs/report-card.md, section 14): the refit start fine-tunes worse than the original
            # weights under the data-aware masks (93%: 96.1 vs 97.0); keep the masks, put the originals back
            masks_on_original(work, calibration)
        args = dict(finetune)
        trained = work
        if compact and not needs_masked_model(args):
            # the compacted model trains the same kept weights, in less time (rcprune.torch.compact_finetune)
            tc = time.perf_counter()
            compacted = compacted_for_training(work.eval(), result.solution, ext, partial=partial,
                                               latency_table=table if partial == "auto" else None)
            if compacted is not None:
                trained, crep = compacted
                seconds["compact"] = time.perf_counter() - tc
                t += seconds["compact"]
        report.finetuned = "compacted" if trained is not work else "masked"
        report.history = finetune_model(trained, args.pop("train_loader"), args.pop("epochs"), **args)
        seconds["finetune"] = time.perf_counter() - t
        if trained is not work:
            report.compacted = crep
            report.macs_before, report.macs_after = crep.macs_before, crep.macs_after
            report.weights_before, report.weights_after = crep.weights_before, crep.weights_after
            return fold_batchnorms(trained.eval()), report
    work.eval()
    if not compact:
        return work, report
    t = time.perf_counter()
    small, crep = compact_model(work, result.solution, ext, partial=partial,
                                latency_table=table if partial == "auto" else None)
    seconds["compact"] = time.perf_counter() - t
    report.compacted = crep
    report.macs_before, report.macs_after = crep.macs_before, crep.macs_after
    report.weights_before, report.weights_after = crep.weights_before, crep.weights_after
    return small.eval(), report
