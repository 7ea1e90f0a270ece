"""Per-layer error-vs-kept curves for small-weight retention, and the budget split they give
(``retention_prune(allocation="curves")``): the allocation OBC and SPDY make for unstructured sparsity.

Each layer's curve is its output error after the least-squares refit (the compensated objective, damped H)
at a grid of kept counts, each point SparseGPT's mask at that count (:mod:`rcprune.solvers.retention.sparsegpt`,
its cost the exact error of that mask after the exact refit): an achievable error, so an upper bound of the
layer's optimum there. The grid holds the uniform count of the requested sparsity, so the uniform split is
one of the choices and the allocation's summed curve error is never above the uniform one's (when the
uniform split keeps a weight in every row: every choice does).
:func:`rcprune.network.curve_allocation.allocate_by_curves` then picks one point per layer under the
global kept-weight budget (an exact multiple-choice knapsack with a certified lower bound).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(6, 40))
>>> counts, errors = layer_curve("fc", rng.normal(size=(2, 6)), x @ x.T / 40, dict(points=4, keep=3))
>>> counts.tolist(), bool(errors[-1] < 1e-9)
([2, 4, 6, 8, 12], True)
"""
from __future__ import annotations

import numpy as np

from rcprune.network.curve_allocation import CurveAllocation, allocate_by_curves
from rcprune.parallel import map_layers
from rcprune.retention.model import RetentionInstance
from rcprune.validation import InvalidInstanceError, kept_from_fraction

__all__ = ["layer_curve", "retention_curves", "allocate_retention", "check_budget", "uniform_count", "uniform_error"]


def uniform_count(m: int, n: int, sparsity: float, scope: str) -> int:
    """The kept weights of an m x n layer under the uniform split: ``m floor((1 - s) n)`` per row, else
    ``floor((1 - s) m n)`` (:func:`rcprune.validation.kept_from_fraction`, the instances' own rule)."""
    return m * kept_from_fraction(n, sparsity=sparsity) if scope == "row" else kept_from_fraction(m * n, sparsity=sparsity)


def _grid(m: int, n: int, points: int, keep: int, scope: str) -> np.ndarray:
    """Kept counts of one layer: one weight per row (``m`` in the layer), ``points`` even steps up to every
    weight (per row for ``scope="row"``, so each is a multiple of ``m``) and ``keep`` (the uniform count);
    none below one weight per row. Not fewer: a layer's error curve does not see that every later layer depends on it, and
    measured on the MNIST ResNet-20 at 95% the split then emptied the 3x3 stem on one input channel (the
    uniform split's 0 of 9 per row), which leaves the network a constant."""
    per, least = (n, 1) if scope == "row" else (m * n, m)
    ks = np.unique(np.concatenate([np.round(np.linspace(per / points, per, points)), [keep, least]]).astype(np.int64))
    ks = ks[(ks >= least) & (ks <= per)]
    return ks * m if scope == "row" else ks


def layer_curve(name: str, weights: np.ndarray, hessian: np.ndarray, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, errors)`` of one layer: kept weights and the error after the refit of SparseGPT's mask there.
    ``settings``: ``points``, ``keep`` (the uniform count, per row for ``scope="row"``),
    ``scope``, ``damping``. O(points (n^3 + m n^2 + m k^3))."""
    from rcprune.solve import solve

    scope, damping = settings.get("scope", "row"), settings.get("damping", 0.01)
    m, n = weights.shape
    counts = _grid(m, n, settings["points"], settings["keep"], scope)
    errors = np.empty(len(counts))
    for i, total in enumerate(counts):
        k = int(total // m) if scope == "row" else int(total)
        if k == (n if scope == "row" else m * n):
            errors[i] = 0.0   # every weight kept: nothing to refit
            continue
        inst = RetentionInstance(weights, hessian, k=k, scope=scope, damping=damping, objective="compensated", name=name)
        errors[i] = solve(inst, method="sparsegpt").cost
    return counts, errors


def retention_curves(weights: dict[str, np.ndarray], hessians: dict[str, np.ndarray], *, sparsity: float,
                     points: int, scope: str, damping: float, n_jobs: int = 1, backend: str = "loky",
                     progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every layer's :func:`layer_curve`, on ``n_jobs`` workers (:func:`rcprune.parallel.map_layers`)."""
    jobs = []
    for name, w in weights.items():
        m, n = w.shape
        keep = uniform_count(m, n, sparsity, scope) // (m if scope == "row" else 1)
        jobs.append((name, (name, w, hessians[name], dict(points=points, keep=keep, scope=scope, damping=damping))))
    out = map_layers(layer_curve, jobs, n_jobs=n_jobs, backend=backend, progress=progress, desc="retention curves",
                     cost=lambda args: args[1].shape[0] * args[1].shape[1] ** 2)
    return dict(zip(weights, out))


def check_budget(shapes: dict[str, tuple[int, int]], sparsity: float, scope: str) -> int:
    """The kept-weight total of the uniform split at ``sparsity``; an error naming the largest possible
    sparsity where it is less than one weight per row of every layer (the curves' least)."""
    budget = sum(uniform_count(m, n, sparsity, scope) for m, n in shapes.values())
    least = sum(m for m, _ in shapes.values())
    total = sum(m * n for m, n in shapes.values())
    if budget < least:
        raise InvalidInstanceError(
            f"allocation='curves' keeps at least one weight per row of every layer ({least} of {total}), more than "
            f"sparsity {sparsity:g} leaves ({budget}): ask for at most {1 - least / total:.4f}")
    return budget


def allocate_retention(curves: dict[str, tuple[np.ndarray, np.ndarray]], shapes: dict[str, tuple[int, int]],
                       sparsity: float, scope: str) -> tuple[dict[str, float], CurveAllocation]:
    """Per layer the sparsity of its chosen point (its kept count exactly: ``k / n`` per row, or ``K / (m n)``)
    and the allocation, under the kept-weight budget of the uniform split at ``sparsity``."""
    alloc = allocate_by_curves(curves, check_budget(shapes, sparsity, scope))
    return {name: 1.0 - alloc.counts[name] / (m * n) for name, (m, n) in shapes.items()}, alloc


def uniform_error(curves: dict[str, tuple[np.ndarray, np.ndarray]], shapes: dict[str, tuple[int, int]],
                  sparsity: float, scope: str) -> float | None:
    """The uniform split's summed curve error (its counts are on every grid), or None where it keeps less than
    a weight per row in some layer (then it is not one of the curves' choices)."""
    total = 0.0
    for name, (m, n) in shapes.items():
        counts, errors = curves[name]
        k = uniform_count(m, n, sparsity, scope)
        if k < counts[0]:
            return None
        total += float(errors[np.searchsorted(counts, k)])
    return total
