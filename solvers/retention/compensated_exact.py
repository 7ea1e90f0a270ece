"""Exact small-weight retention under the compensated objective: every support of every row, scored in
batches by E(S) = w^T H w - b_S^T H_SS^-1 b_S (b = H w), the optimum proven by exhaustion.

Row budgets score the C(n, k) supports of size k; a layer budget scores all 2^n supports of each row,
keeps each row's best error per size and splits the budget over the rows by dynamic programming
(:func:`rcprune.solvers.retention.exact.split_budget`).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution
from rcprune.validation import InvalidInstanceError, check_fraction

from rcprune.solvers import check_objective
from rcprune.solvers.retention.exact import split_budget
from rcprune.solvers.retention.obc import obc_mask

__all__ = ["compensated_exact", "best_supports", "enumerable", "MAX_N", "MAX_SUPPORTS"]

MAX_N = 16                  # a layer budget scores the 2^n supports of every row
MAX_SUPPORTS = 2 ** MAX_N   # a row budget scores C(n, k) supports per row: as many (n = 32 at k = 3: 4,960)
BATCH = 4096                # supports solved per batched call


def enumerable(instance: RetentionInstance) -> bool:
    """Whether :func:`compensated_exact` enumerates ``instance``: a row budget's C(n, k) supports per row at
    most :data:`MAX_SUPPORTS`, a layer budget's 2^n at most ``2^MAX_N``."""
    if instance.scope == "row":
        return math.comb(instance.n, instance.k) <= MAX_SUPPORTS
    return instance.n <= MAX_N


def best_supports(w: np.ndarray, h: np.ndarray, size: int) -> tuple[float, tuple[int, ...]]:
    """The least error over supports of ``size`` weights of row ``w`` and one support attaining it
    (the first in lexicographic order among equals). O(C(n, size) size^3)."""
    n = w.shape[0]
    energy = float(w @ h @ w)
    if size == 0:
        return max(0.0, energy), ()
    b = h @ w
    best, arg = np.inf, ()
    combos = itertools.combinations(range(n), size)
    while chunk := list(itertools.islice(combos, BATCH)):
        s = np.array(chunk)
        hs = h[s[:, :, None], s[:, None, :]]
        bs = b[s]
        gain = np.einsum("ci,ci->c", bs, np.linalg.solve(hs, bs[:, :, None])[:, :, 0])
        c = int(np.argmax(gain))
        if energy - gain[c] < best:
            best, arg = energy - float(gain[c]), tuple(chunk[c])
    return max(0.0, best), arg


def _mask(n: int, support: tuple[int, ...]) -> np.ndarray:
    keep = np.zeros(n, dtype=bool)
    keep[list(support)] = True
    return keep


def compensated_exact(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                      proof_tolerance: float = 1e-6) -> SolveResult:
    """Optimal keep-mask under the compensated objective, proven by enumerating every support (a row
    budget: C(n, k) <= 65,536 supports per row; a layer budget: n <= 16).

    O(m C(n, k) k^3) for a row budget, O(m 2^n n^3) plus an O(m K n) dynamic program for a layer budget.
    A time limit stops between rows: proven rows keep their optimum, the others OBC's mask, and the
    bound counts the proven rows only (every error is >= 0); a layer budget cut short keeps OBC's mask
    with the bound 0.

    >>> import rcprune
    >>> H = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = compensated_exact(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=2, damping=0))
    >>> res.status, res.solution.mask.tolist(), round(res.cost, 4)
    ('optimal', [[True, False, True]], 0.1216)
    """
    check_objective(instance, "compensated-exact")
    if not enumerable(instance):
        if instance.scope == "row":
            raise InvalidInstanceError(
                f"compensated-exact enumerates at most {MAX_SUPPORTS:,} supports per row; a row budget of k = "
                f"{instance.k} of n = {instance.n} weights has C(n, k) = {math.comb(instance.n, instance.k):,}")
        raise InvalidInstanceError(f"compensated-exact enumerates the 2^n supports of rows of n <= {MAX_N} weights "
                                   f"under a layer budget, got n = {instance.n}")
    proof_tolerance = check_fraction(proof_tolerance, "proof_tolerance", allow_zero=True, allow_one=False)
    clock = Stopwatch(time_limit)
    w, h, (m, n) = instance.weights, instance.hessian, instance.shape
    sizes = [instance.k] if instance.scope == "row" else range(n + 1)
    table = np.full((m, n + 1), np.inf)
    supports: dict[tuple[int, int], tuple[int, ...]] = {}
    timed_out, proven = False, 0
    for i in range(m):
        if clock.expired():
            timed_out = True
            break
        for c in sizes:
            table[i, c], supports[i, c] = best_supports(w[i], h, c)
        proven = i + 1
    if instance.scope == "row":
        keep = obc_mask(instance)[0] if timed_out else np.zeros((m, n), dtype=bool)
        for i in range(proven):
            keep[i] = _mask(n, supports[i, instance.k])
        bound = float(table[:proven, instance.k].sum())
    elif timed_out:
        keep, bound = obc_mask(instance)[0], 0.0
    else:
        bound, counts = split_budget(table, instance.k)
        keep = np.array([_mask(n, supports[i, c]) for i, c in enumerate(counts)])
    return make_result(instance, RetentionSolution(keep), method="compensated-exact", runtime=clock.elapsed(),
                       iterations=proven, lower_bound=bound, timed_out=timed_out, seed=seed,
                       info={"proven_rows": proven},
                       # cut short, the bound covers the proven rows only: optimal only if it meets the cost exactly
                       proof_tolerance=0.0 if timed_out else float(proof_tolerance))
