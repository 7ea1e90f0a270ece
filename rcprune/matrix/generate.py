"""Seeded instance generators: weight-magnitude distributions, planted blocks, 0/1 bipartite graphs.

Trained layers have roughly Gaussian or Laplace weights, so ``|N(0,1)|`` and ``|Laplace(0,1)|``
magnitudes model real score matrices; ``uniform`` is the unstructured control; ``planted`` hides a dense
block whose optimality is proven by construction; ``bipartite`` gives the 0/1 matrices of the biclique
problems RC pruning generalizes. Same family, shape, parameters and seed: the same instance, always.

>>> inst = generate("planted", 6, 8, seed=1, rows=2, cols=3)
>>> inst.budget, inst.metadata["proven"]
(6, True)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError, check_seed

__all__ = ["generate", "FAMILIES"]

FAMILIES = ("uniform", "gaussian", "laplace", "planted", "bipartite")


def _magnitudes(family: str, m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if family == "uniform":
        return rng.random((m, n))
    if family == "gaussian":
        return np.abs(rng.standard_normal((m, n)))
    if family == "laplace":
        return np.abs(rng.laplace(size=(m, n)))
    raise AssertionError(family)


def _planted(m: int, n: int, r: int, c: int, rng: np.random.Generator):
    """A block of r*c scores in [B, B(1 + eps)) on random rows/cols, the rest in [0, delta).

    With eps = 0.5 / (r c) and delta = 0.25 B / (r c), any kept set of at most r*c entries that misses
    a block entry keeps at most (rc - 1) B (1 + eps) + rc delta < rc B, i.e. less than the block alone:
    so the block (and nothing else fits beside it) is the unique optimum at budget r*c.
    """
    if not (1 <= r <= m and 1 <= c <= n):
        raise InvalidInstanceError(f"planted block {r} x {c} does not fit a {m} x {n} matrix")
    k = r * c
    big, eps, delta = 1.0, 0.5 / k, 0.25 / k
    scores = rng.random((m, n)) * delta
    rows = np.sort(rng.choice(m, size=r, replace=False))
    cols = np.sort(rng.choice(n, size=c, replace=False))
    scores[np.ix_(rows, cols)] = big * (1.0 + eps * rng.random((r, c)))
    block_sum = float(scores[np.ix_(rows, cols)].sum())
    return scores, rows, cols, float(scores.sum()) - block_sum


def generate(family: str, m: int, n: int, *, seed: int = 0, budget: int | None = None,
             density: float | None = None, sparsity: float | None = None, name: str | None = None,
             **params: Any) -> Instance:
    """Generate an instance of ``family`` (one of :data:`FAMILIES`) with shape (m, n).

    Parameters
    ----------
    family : str
    m, n : int
    seed : int
    budget, density, sparsity
        The kept-entry budget (one of them; the planted family sets it to rows * cols).
    name : str, optional
        Defaults to ``f"{family}-{m}x{n}-seed{seed}"``.
    **params
        ``planted``: ``rows``, ``cols`` (block shape). ``bipartite``: ``p`` (edge probability, default 0.5).
    """
    if family not in FAMILIES:
        raise InvalidInstanceError(f"unknown instance family {family!r}; available: {', '.join(FAMILIES)}")
    for label, v in (("m", m), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidInstanceError(f"{label} must be a positive integer, got {v!r}")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {"source": "rcprune.generate", "generator": family, "seed": seed,
                            "params": dict(params)}
    name = name or f"{family}-{m}x{n}-seed{seed}"
    if family == "planted":
        unknown = set(params) - {"rows", "cols"}
        if unknown or not {"rows", "cols"} <= params.keys():
            raise InvalidInstanceError("planted takes exactly the parameters rows and cols (block shape)")
        if budget is not None or density is not None or sparsity is not None:
            raise InvalidInstanceError("planted sets its own budget (rows * cols); do not pass one")
        r, c = int(params["rows"]), int(params["cols"])
        scores, rows, cols, cost = _planted(m, n, r, c, rng)
        meta.update(best_known_cost=cost, best_lower_bound=cost, proven=True, best_method="planted",
                    planted_rows=rows.tolist(), planted_cols=cols.tolist())
        return Instance(scores, budget=r * c, name=name, metadata=meta)
    if family == "bipartite":
        unknown = set(params) - {"p"}
        if unknown:
            raise InvalidInstanceError(f"bipartite takes only the parameter p, got {sorted(unknown)}")
        p = float(params.get("p", 0.5))
        if not 0.0 <= p <= 1.0:
            raise InvalidInstanceError(f"bipartite edge probability p must be in [0, 1], got {p}")
        meta["params"] = {"p": p}
        scores = (rng.random((m, n)) < p).astype(np.float64)
    else:
        if params:
            raise InvalidInstanceError(f"{family} takes no parameters, got {sorted(params)}")
        scores = _magnitudes(family, m, n, rng)
    return Instance(scores, budget=budget, density=density, sparsity=sparsity, name=name, metadata=meta)
