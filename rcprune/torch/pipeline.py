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
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch.nn as nn

from rcprune.network.model import NetworkSolution
from rcprune.result import SolveResult
from rcprune.validation import InvalidInstanceError, check_flag, check_fraction

from rcprune.torch.compact import CompactReport, compact as compact_model
from rcprune.torch.batches import check_loader
from rcprune.torch.extract import Extraction, extract
from rcprune.torch.finetune import finetune as finetune_model
from rcprune.torch.masking import apply
from rcprune.torch.refit import RefitReport, ls_refit

__all__ = ["prune", "PruneReport"]


@dataclass
class PruneReport:
    """What :func:`prune` did.

    Attributes
    ----------
    extraction : Extraction
        The traced instance and the mapping back to the (copied) model.
    result : SolveResult
        The network solve (cost, lower bound and certified gap when ``bound=True``, runtime, ...).
    budget, kept_weights : int
        The kept-weight budget of the prunable layers and what the solution keeps.
    macs_before, macs_after, weights_before, weights_after : int or None
        From :func:`rcprune.torch.compact` (None when ``compact=False``).
    refit : RefitReport or None
    history : list of dict
        Fine-tuning epochs (empty without fine-tuning).
    seconds : dict
        Wall time of each step.
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
    history: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    compacted: CompactReport | None = None

    @property
    def solution(self) -> NetworkSolution:
        return self.result.solution

    def summary(self) -> dict[str, Any]:
        """JSON-friendly: the solve summary, counts, MACs, last fine-tune epoch and step times."""
        return {"solve": self.result.summary(), "budget": self.budget, "kept_weights": self.kept_weights,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "weights_before": self.weights_before, "weights_after": self.weights_after,
                "refit_layers": len(self.refit.layers) if self.refit else 0,
                "finetune": self.history[-1] if self.history else None, "seconds": dict(self.seconds)}


def prune(model: nn.Module, example_inputs, sparsity: float = 0.9, *, method: str = "network-greedy",
          scores: str | Callable = "l1", weighting: Any = "none", protect: Sequence[str] = (), seed: int = 0,
          time_limit: float | None = None, bound: bool = False, solver_options: dict | None = None,
          refit=None, finetune: dict | None = None, compact: bool = True, partial: str = "auto",
          ) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of ``model`` to ``sparsity`` of its conv + linear weights with a network method.

    Parameters
    ----------
    model : nn.Module
        Left unchanged (the work happens on a deep copy).
    example_inputs : Tensor or tuple of Tensors
        For tracing and shapes (:func:`rcprune.torch.extract`).
    sparsity : float
        Fraction of the prunable weights to remove, in (0, 1).
    method : str
        A network method of :func:`rcprune.solve` (``"network-greedy"``, ``"network-allocation"``,
        ``"network-annealing"``, ...); ``seed``, ``time_limit`` and ``solver_options`` go to it.
    scores, weighting, protect
        The objective (:func:`rcprune.torch.extract`); weighting ``"none"`` fine-tuned best on the
        digits ResNet (``docs/report-card.md``).
    bound : bool
        Attach the network lower bound, so ``report.result.gap`` is a certified gap.
    refit : iterable of batches, optional
        Calibration data for :func:`rcprune.torch.ls_refit` (zero-shot least-squares refit).
    finetune : dict, optional
        Keyword arguments of :func:`rcprune.torch.finetune` (``train_loader`` and ``epochs`` required);
        masks stay fixed, so pruned weights stay zero.
    compact : bool
        Return the physically smaller model (:func:`rcprune.torch.compact`, ``partial`` mode) in eval
        mode; ``False`` returns the masked copy (reversible with :func:`rcprune.torch.restore`).

    Returns
    -------
    (nn.Module, PruneReport)
    """
    from rcprune.solve import solve

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
    compact = check_flag(compact, "compact")
    seconds = {}
    t = time.perf_counter()
    work = copy.deepcopy(model).eval()
    ext = extract(work, example_inputs, scores=scores, protect=protect, sparsity=sparsity, weighting=weighting)
    seconds["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    result = solve(ext.instance, method=method, seed=seed, time_limit=time_limit, bound=bound,
                   **(solver_options or {}))
    seconds["solve"] = time.perf_counter() - t
    if not result.feasible:
        raise InvalidInstanceError(f"method {method!r} returned an infeasible solution (status {result.status})")
    apply(work, result.solution, ext)
    report = PruneReport(ext, result, ext.instance.effective_budget, int(result.kept_count), seconds=seconds)
    if refit is not None:
        t = time.perf_counter()
        report.refit = ls_refit(work, result.solution, refit, extraction=ext)
        seconds["refit"] = time.perf_counter() - t
    if finetune is not None:
        t = time.perf_counter()
        args = dict(finetune)
        report.history = finetune_model(work, args.pop("train_loader"), args.pop("epochs"), **args)
        seconds["finetune"] = time.perf_counter() - t
    work.eval()
    if not compact:
        return work, report
    t = time.perf_counter()
    small, crep = compact_model(work, result.solution, ext, partial=partial)
    seconds["compact"] = time.perf_counter() - t
    report.compacted = crep
    report.macs_before, report.macs_after = crep.macs_before, crep.macs_after
    report.weights_before, report.weights_after = crep.weights_before, crep.weights_after
    return small.eval(), report
