"""Exact data-aware RC: every column set C, each with its best rows, the optimum proven by exhaustion.

For a fixed C the best R is the ⌊K / |C|⌋ rows of largest benefit b_i(C) = g_iC^T H_CC^-1 g_iC with
g_i = H w_i (:mod:`rcprune.matrix.compensated`), so enumerating the 2^n column sets (batched by size, one
solve per set for every row at once) and keeping the best pair is exact.
"""
from __future__ import annotations

import itertools

import numpy as np

from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_fraction

from rcprune.solvers import check_objective
from rcprune.solvers.matrix.structured_obs import best_prefix

__all__ = ["compensated_rc_exact", "MAX_N"]

MAX_N = 16        # 2^16 column sets
BATCH = 2048      # column sets solved per batched call


def _sizes(instance: CompensatedInstance) -> list[int]:
    if instance.fixed_shape is not None:
        return [instance.fixed_shape[1]]
    return [c for c in range(1, instance.n + 1) if instance.rows_for(c) > 0]


def compensated_rc_exact(instance: CompensatedInstance, *, seed: int = 0, time_limit: float | None = None,
                         proof_tolerance: float = 1e-6) -> SolveResult:
    """Optimal (R, C) under the compensated objective, proven by enumerating every column set (n <= 16).

    O(2^n (n^3 + m n^2 + m log m)). Cut short by ``time_limit``, it returns the better of the sets scored
    so far and structured-OBS's solution, without a bound (status ``time_limit``).

    >>> import numpy as np, rcprune
    >>> H = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> inst = rcprune.Instance.from_layer([[1.0, 0.8, 0.7], [0.1, 0.1, 0.1]], hessian=H, budget=2, damping=0)
    >>> res = rcprune.solve(inst, method="compensated-rc-exact")
    >>> res.status, res.solution, round(res.cost, 4)
    ('optimal', Solution(rows=[0], cols=[0, 2]), 0.1696)
    """
    check_objective(instance, "compensated-rc-exact")
    if instance.n > MAX_N:
        raise InvalidInstanceError(f"compensated-rc-exact enumerates the 2^n column sets of n <= {MAX_N} columns, "
                                   f"got n = {instance.n}")
    proof_tolerance = check_fraction(proof_tolerance, "proof_tolerance", allow_zero=True, allow_one=False)
    clock = Stopwatch(time_limit)
    m, n = instance.shape
    g = instance.weights @ instance.hessian          # row i: H w_i
    total = float(instance.energies.sum())
    best = (total, np.zeros(m, dtype=bool), np.zeros(n, dtype=bool))
    scored, timed_out = 0, False
    for size in _sizes(instance):
        r = instance.rows_for(size)
        combos = itertools.combinations(range(n), size)
        while chunk := list(itertools.islice(combos, BATCH)):
            if clock.expired():
                timed_out = True
                break
            s = np.array(chunk)
            hs = instance.hessian[s[:, :, None], s[:, None, :]]          # (B, c, c)
            gs = np.transpose(g[:, s], (1, 2, 0))                         # (B, c, m)
            benefit = np.einsum("bcm,bcm->bm", gs, np.linalg.solve(hs, gs))
            top = -np.sort(-benefit, axis=1)[:, :r].sum(1)
            k = int(np.argmax(top))
            scored += len(chunk)
            if total - top[k] < best[0]:
                rows = np.zeros(m, dtype=bool)
                rows[np.argsort(-benefit[k], kind="stable")[:r]] = True
                cols = np.zeros(n, dtype=bool)
                cols[s[k]] = True
                best = (total - float(top[k]), rows, cols)
        if timed_out:
            break
    if timed_out:
        (cost, rows, cols), _ = best_prefix(instance)
        if cost < best[0]:
            best = (cost, rows, cols)
    return make_result(instance, Solution(best[1], best[2]), method="compensated-rc-exact", runtime=clock.elapsed(),
                       iterations=scored, seed=seed, timed_out=timed_out,
                       lower_bound=None if timed_out else max(0.0, best[0]),
                       info={"column_sets": scored}, proof_tolerance=float(proof_tolerance))
