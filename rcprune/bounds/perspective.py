"""The perspective bound: a proven lower bound on the compensated objective (the error after the optimal
least-squares refit) of weight selection, for any number of weights per row.

Row i's least error with at most k kept weights is min f(beta) over ||beta||_0 <= k, where
f(beta) = (w - beta)^T H (w - beta) (beta: the refit row). Split H = A + D with D = diag(d) >= 0 and
A = H - D positive semidefinite, and relax ||beta||_0 <= k by a multiplier; weak (Fenchel) duality then gives,
for **every** beta (proofs/bounds.md, "The perspective bound"),

    OPT_i >= c - beta^T A beta - (sum of the k largest of (b_j - (A beta)_j)^2 / d_j),    b = H w, c = w^T H w,

and with one budget K over all rows (``scope="layer"``), the sum over rows of ``c - beta^T A beta`` minus the
K largest of all rows' terms. Any beta gives a valid bound; the best one solves the perspective
relaxation of the problem, found by accelerated proximal gradient on it (the prox of the reverse Huber
penalty is closed-form) with a bisection on the multiplier, so a cut-short run only loosens the bound.
Two splits are tried, ``d = t / diag(H^-1)`` (t the largest that keeps A >= 0) and ``d = lambda_min(H)``,
and per row (row budgets) or per layer (a layer budget) the better bound is kept. A is certified
positive definite by a Cholesky factorization of A minus a relative margin (the test every compensated
instance's Hessian passes), and a rounding margin is subtracted from the bound.

It also bounds data-aware RC (:class:`rcprune.matrix.compensated.CompensatedInstance`): kept rows R and
shared columns C with |R| |C| <= K are a weight selection of at most K weights in all, so the RC optimum is
at least the layer-budget bound with that K (weak: it ignores that the rows share their columns).

Cost: O(m n^2) per proximal step (one product with A for all rows), ``steps * iterations`` steps per split,
plus O(n^3) for the splits. Measured on the demo's trained ResNet-20 layers (H from 512 images, 1% damping):
0.5-0.85 of OBC's error at 50%, 0.35-0.6 at 90%, and 0.03-0.5 of structured-OBS's for RC (OBC and
structured-OBS are within 0-10% of the optimum where it is known), so the bound certifies gaps but does not
decide whether OBC can be beaten by 10%.

>>> import rcprune
>>> inst = rcprune.RetentionInstance([[1.0, 0.8, 0.7]], [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]],
...                                  k=2, damping=0)
>>> round(perspective_bound(inst).bound, 4), round(rcprune.solve(inst, method="compensated-exact").cost, 4)
(0.1216, 0.1216)
"""
from __future__ import annotations

import time

import numpy as np

from rcprune.bounds.shapes import BoundResult
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.retention.model import RetentionInstance
from rcprune.validation import DEFINITE_TOLERANCE, InvalidInstanceError, check_int_option, clears

__all__ = ["perspective_bound", "bound_at", "diagonal_splits"]

ITERATIONS = 150   # proximal steps per multiplier
STEPS = 24         # bisection steps on the multiplier


def diagonal_splits(h: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Diagonals d > 0 with H - diag(d) certified positive definite (:func:`rcprune.validation.clears`, the
    Cholesky test the instances' Hessians pass): ``("scaled", t / diag(H^-1))``, t the largest that keeps it
    semidefinite, and ``("identity", lambda_min(H) 1)``, each shrunk by the least of a few relative steps
    that certifies it (splits that never do are left out)."""
    lam_min = float(np.linalg.eigvalsh(h)[0])
    if not lam_min > 0:
        return []
    inv = np.linalg.inv(h)
    u = 1.0 / np.diag(inv)
    s = np.sqrt(u)
    candidates = [("scaled", u / float(np.linalg.eigvalsh(s[:, None] * inv * s[None, :])[-1])),
                  ("identity", np.full(h.shape[0], lam_min))]
    found = []
    for name, d in candidates:
        for shrink in (1e-9, 1e-6, 1e-3, 1e-1):
            if clears(h - np.diag(d * (1.0 - shrink)), DEFINITE_TOLERANCE):
                found.append((name, d * (1.0 - shrink)))
                break
    return found


def bound_at(weights: np.ndarray, h: np.ndarray, d: np.ndarray, beta: np.ndarray, k: int, scope: str) -> np.ndarray:
    """The dual bound at refit rows ``beta`` (one per weight row): per row for ``scope="row"`` (budget k per
    row), else a one-element array for the layer (budget k in all). ``H - diag(d)`` must be positive
    semidefinite and ``d > 0``. O(m n^2)."""
    a = h - np.diag(d)
    b = weights @ h
    c = np.einsum("ij,ij->i", weights, b)
    ab = beta @ a
    base = c - np.einsum("ij,ij->i", beta, ab)
    g = (b - ab) ** 2 / d[None, :]
    if scope == "row":
        return base - -np.sort(-g, axis=1)[:, :k].sum(axis=1)
    return np.array([base.sum() - np.sort(g, axis=None)[::-1][:k].sum()])


def _prox(v: np.ndarray, gamma: float, lam: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Prox of gamma * rho, rho(t) = 2 sqrt(lam d)|t| for |t| <= sqrt(lam/d), d t^2 + lam beyond (the convex
    envelope of d t^2 + lam [t != 0]), elementwise."""
    shrink = 2.0 * gamma * np.sqrt(lam * d)
    edge = np.sqrt(lam / d) + shrink
    inner = np.sign(v) * np.maximum(np.abs(v) - shrink, 0.0)
    return np.where(np.abs(v) <= edge, inner, v / (1.0 + 2.0 * gamma * d))


def _relaxation(weights, h, d, k, scope, iterations, steps, deadline):
    """Refit rows near the perspective relaxation's optimum: accelerated proximal gradient at each
    multiplier of a bisection that steers the relaxed count of kept weights to the budget; returns the
    best bound met on the way (per row or for the layer)."""
    a = h - np.diag(d)
    b = weights @ h
    m = weights.shape[0]
    gamma = 1.0 / (2.0 * max(float(np.linalg.eigvalsh(a)[-1]), 1e-300))
    energy = np.einsum("ij,ij->i", weights, b)
    # the dual is concave in the multiplier, 0 at 0 and at most energy - multiplier * k: its maximum lies
    # below energy / k
    lo = np.zeros(m if scope == "row" else 1)
    hi = (energy if scope == "row" else np.array([energy.sum()])) / max(k, 1) + 1e-300
    beta = weights.copy()
    best = bound_at(weights, h, d, beta, k, scope)
    for _ in range(steps):
        lam = (lo + hi) / 2
        lam_rows = (lam if scope == "row" else np.full(m, lam[0]))[:, None]
        x, y, t = beta, beta.copy(), 1.0
        for it in range(iterations):
            nxt = _prox(y - gamma * (2.0 * (y @ a) - 2.0 * b), gamma, lam_rows, d[None, :])
            tn = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
            y = nxt + ((t - 1.0) / tn) * (nxt - x)
            moved = float(np.abs(nxt - x).max()) if it % 10 == 9 else np.inf
            x, t = nxt, tn
            if moved <= 1e-12 * (1.0 + float(np.abs(x).max())):
                break
            if it % 10 == 9 and deadline is not None and time.perf_counter() > deadline:
                break
        beta = x
        best = np.maximum(best, bound_at(weights, h, d, beta, k, scope))
        z = np.minimum(1.0, np.abs(beta) * np.sqrt(d[None, :] / lam_rows)).sum(axis=1)
        count = z if scope == "row" else np.array([z.sum()])
        more = count > k   # the relaxation keeps too much: a larger multiplier
        lo, hi = np.where(more, lam, lo), np.where(more, hi, lam)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return best


def perspective_bound(instance, *, iterations: int = ITERATIONS, steps: int = STEPS,
                      time_limit: float | None = None) -> BoundResult:
    """A proven lower bound on the least compensated error of ``instance`` (see the module docstring).

    Parameters
    ----------
    instance : RetentionInstance (objective ``"compensated"``) or CompensatedInstance (data-aware RC)
    iterations, steps : int
        Proximal steps per multiplier, bisection steps on the multiplier (more: a tighter bound).
    time_limit : float, optional
        Stop the search early (the bound found so far is returned; every iterate is valid).
    """
    start = time.perf_counter()
    iterations = check_int_option(iterations, "iterations", minimum=1)
    steps = check_int_option(steps, "steps", minimum=1)
    if isinstance(instance, RetentionInstance):
        if instance.objective != "compensated":
            raise InvalidInstanceError("the perspective bound is for the compensated objective; this instance is "
                                       f"{instance.objective!r}")
        k, scope, what = instance.k, instance.scope, "weight selection"
    elif isinstance(instance, CompensatedInstance):
        k, scope, what = instance.budget, "layer", "data-aware RC (a weight selection of at most K weights in all)"
    else:
        raise InvalidInstanceError("the perspective bound needs a compensated RetentionInstance or a data-aware "
                                   f"RC instance, got {type(instance).__name__}")
    w, h = np.asarray(instance.weights, np.float64), np.asarray(instance.hessian, np.float64)
    m, n = w.shape
    energy = np.einsum("ij,ij->i", w, w @ h)
    capacity = n if scope == "row" else m * n
    deadline = None if time_limit is None else start + float(time_limit)
    if k >= capacity:
        bound, used = 0.0, "none (the budget keeps every weight)"
    elif k == 0:
        bound, used = float(energy.sum()), "none (the budget keeps no weight: the error is w^T H w)"
    else:
        per_split = {name: _relaxation(w, h, d, k, scope, iterations, steps, deadline)
                     for name, d in diagonal_splits(h)}
        if not per_split:
            bound, used = 0.0, "none (no positive diagonal fits under H)"
        elif scope == "row":
            stacked = np.vstack(list(per_split.values()))
            bound, used = float(np.maximum(stacked.max(axis=0), 0.0).sum()), "+".join(per_split)
        else:
            used = max(per_split, key=lambda s: per_split[s][0])
            bound = max(float(per_split[used][0]), 0.0)
    margin = 64.0 * np.finfo(np.float64).eps * n * float(np.abs(energy).sum() + 1.0)
    bound = float(max(bound - margin, 0.0))
    proof = (f"perspective bound for {what}: H = A + diag(d) with A certified positive definite (Cholesky) "
             f"(split {used}); for any refit rows beta, weak duality gives OPT >= sum of w^T H w - beta^T A beta "
             f"minus the {k} largest (b_j - (A beta)_j)^2 / d_j ({'per row' if scope == 'row' else 'over the layer'}),"
             f" beta from the perspective relaxation; OPT >= {bound:.10g}")
    return BoundResult(bound, "perspective", proof, None, time.perf_counter() - start, steps * iterations,
                       info={"split": used, "scope": scope, "budget": int(k)})
