"""Exact small-weight retention: Gray-code enumeration of every keep-mask of short rows, or CP-SAT on the
linearized quadratic (one Boolean per product of two pruned indicators), with a proven lower bound.

Enumeration visits all 2^n masks of a row, each reached from the previous by one toggle scored in O(1)
and applied in O(n), and records the best mask of every cardinality; a layer budget is then split over
the rows by dynamic programming. It proves optimality by exhausting the space (n <= 20 per row).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from rcprune.retention import kernels as rk
from rcprune.jit import jit
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution
from rcprune.validation import InvalidInstanceError, check_fraction

from rcprune.solvers import check_objective
from rcprune.solvers.retention.greedy import greedy_mask

__all__ = ["retention_exact", "enumerate_rows", "split_budget"]

MAX_ENUMERATION_N = 20
BACKENDS = ("auto", "enumeration", "cpsat")
REFRESH_EVERY = 1 << 12      # toggles between exact recomputations of g and E (bounds drift)
ROW_BLOCK = 16               # rows per parallel block between time-limit checks
CPSAT_SCALE = float(1 << 40)  # the largest objective coefficient after scaling to integers (at most)


@jit(parallel=True, nogil=True)
def enumerate_rows(weights, h, rows, best_err, best_bits):
    """For each row i in ``rows``: ``best_err[i, c]`` = min E over masks keeping c weights, ``best_bits[i, c]``
    its pruned set as bits. Gray-code walk from the all-kept mask: O(2^n n) per row."""
    n = weights.shape[1]
    for t in prange(rows.shape[0]):
        i = rows[t]
        w = weights[i]
        keep = np.ones(n, dtype=np.bool_)
        g = np.zeros(n)
        e, bits, pruned = 0.0, np.int64(0), 0
        for c in range(n + 1):
            best_err[i, c] = np.inf
            best_bits[i, c] = 0
        best_err[i, n] = 0.0
        for step in range(1, 1 << n):
            j = 0
            while not (step >> j) & 1:
                j += 1
            if keep[j]:
                e += rk.removal_delta(w, h, g, j)
                rk.apply_removal(w, h, g, keep, j)
                pruned += 1
            else:
                e += rk.restore_delta(w, h, g, j)
                rk.apply_restore(w, h, g, keep, j)
                pruned -= 1
            bits ^= np.int64(1) << j
            if step % REFRESH_EVERY == 0:
                g[:] = rk.pruned_gradient(w, h, keep)
                e = rk.row_error(w, h, keep)
            c = n - pruned
            if e < best_err[i, c]:
                best_err[i, c] = e
                best_bits[i, c] = bits


def split_budget(table: np.ndarray, total: int) -> tuple[float, np.ndarray]:
    """Optimal split of ``total`` kept weights over rows with per-row optima ``table[i, c]``: (E, counts).

    Dynamic programming over rows, O(m K n).

    >>> split_budget(np.array([[4.0, 1.0, 0.0], [9.0, 2.0, 0.0]]), 2)
    (3.0, array([1, 1]))
    """
    m, width = table.shape
    dp = np.full(total + 1, np.inf)
    dp[0] = 0.0
    choice = np.zeros((m, total + 1), dtype=np.int64)
    for i in range(m):
        new = np.full(total + 1, np.inf)
        for c in range(min(width - 1, total) + 1):
            cand = np.full(total + 1, np.inf)
            cand[c:] = dp[:total + 1 - c] + table[i, c]
            better = cand < new
            new[better] = cand[better]
            choice[i, better] = c
        dp = new
    counts = np.zeros(m, dtype=np.int64)
    rest = total
    for i in range(m - 1, -1, -1):
        counts[i] = choice[i, rest]
        rest -= counts[i]
    return float(dp[total]), counts


def _mask_from_bits(bits: np.ndarray, n: int) -> np.ndarray:
    return ((bits[:, None] >> np.arange(n)[None, :]) & 1) == 0


def _enumeration(instance: RetentionInstance, clock: Stopwatch):
    w, h = instance.weights, instance.hessian
    m, n = instance.shape
    best_err = np.full((m, n + 1), np.inf)
    best_bits = np.zeros((m, n + 1), dtype=np.int64)
    start, _ = greedy_mask(instance)
    for lo in range(0, m, ROW_BLOCK):
        if clock.expired():
            if instance.scope == "layer":
                return start, None, True
            # proven rows keep their optimum; the rest keep the greedy mask and contribute E >= 0 to the bound
            mask = start.copy()
            mask[:lo] = _mask_from_bits(best_bits[:lo, instance.k], n)
            return mask, float(rk.row_errors(w[:lo], h, mask[:lo]).sum()), True
        enumerate_rows(w, h, np.arange(lo, min(m, lo + ROW_BLOCK), dtype=np.int64), best_err, best_bits)
    if instance.scope == "row":
        mask = _mask_from_bits(best_bits[:, instance.k], n)
    else:
        _, counts = split_budget(best_err, instance.k)
        mask = _mask_from_bits(best_bits[np.arange(m), counts], n)
    # exhaustive: the mask is optimal (its exact E is the bound, up to rounding in the comparisons)
    return mask, float(rk.row_errors(w, h, mask).sum()), False


def _cpsat(instance: RetentionInstance, clock: Stopwatch, seed: int, workers: int):
    from ortools.sat.python import cp_model

    w, h = instance.weights, instance.hessian
    m, n = instance.shape
    coef = w[:, :, None] * w[:, None, :] * h[None, :, :]   # a_ijl = w_ij w_il H_jl
    top = float(np.abs(coef).max())
    start, _ = greedy_mask(instance)
    if top == 0.0:
        return start, 0.0, False, {"cpsat_status": "trivial"}
    # keep every partial sum of the integer objective far below 2^63
    scale = min(CPSAT_SCALE, float(1 << 60) / (m * n * (n + 1) // 2)) / top
    excess = 0.0   # sum of the positive rounding errors c_t - scale * a_t: s E(x) >= IntObj(x) - excess
    model = cp_model.CpModel()
    pruned = [[model.NewBoolVar(f"p{i}_{j}") for j in range(n)] for i in range(m)]
    terms, weights_int = [], []
    for i in range(m):
        for j in range(n):
            c = int(round(coef[i, j, j] * scale))
            excess += max(0.0, c - coef[i, j, j] * scale)
            if c:
                terms.append(pruned[i][j])
                weights_int.append(c)
            for l in range(j + 1, n):
                c = int(round(2.0 * coef[i, j, l] * scale))
                excess += max(0.0, c - 2.0 * coef[i, j, l] * scale)
                if not c:
                    continue
                y = model.NewBoolVar(f"y{i}_{j}_{l}")
                if c > 0:   # minimized: y only needs to be forced up when both are pruned
                    model.AddBoolOr([pruned[i][j].Not(), pruned[i][l].Not(), y])
                else:       # a reward: y only needs to be forced down unless both are pruned
                    model.AddImplication(y, pruned[i][j])
                    model.AddImplication(y, pruned[i][l])
                terms.append(y)
                weights_int.append(c)
        for j in range(n):
            model.AddHint(pruned[i][j], not start[i, j])
    if instance.scope == "row":
        for i in range(m):
            model.Add(sum(pruned[i]) == n - instance.k)
    else:
        model.Add(sum(p for row in pruned for p in row) == m * n - instance.k)
    model.Minimize(cp_model.LinearExpr.WeightedSum(terms, weights_int))
    solver = cp_model.CpSolver()
    solver.parameters.num_search_workers = workers
    solver.parameters.random_seed = seed % (2**31)
    remaining = clock.remaining()
    if remaining != float("inf"):
        solver.parameters.max_time_in_seconds = max(0.01, remaining)
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return start, None, True, {"cpsat_status": solver.StatusName(status)}
    mask = np.array([[not solver.Value(p) for p in row] for row in pruned], dtype=bool)
    if rk.row_errors(w, h, mask).sum() > rk.row_errors(w, h, start).sum():
        mask = start
    # every assignment has scale * E(x) >= IntObj(x) - excess >= bound - excess
    bound = max(0.0, (solver.BestObjectiveBound() - excess) / scale)
    info = {"cpsat_status": solver.StatusName(status), "terms": len(terms), "rounding_slack": float(excess / scale)}
    return mask, bound, status != cp_model.OPTIMAL, info


def retention_exact(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                    backend: str = "auto", workers: int = 1, proof_tolerance: float = 1e-6) -> SolveResult:
    """Optimal keep-mask with a proof: enumeration for n <= 20, CP-SAT otherwise (or when asked).

    Parameters
    ----------
    instance : RetentionInstance
    backend : {"auto", "enumeration", "cpsat"}
        ``auto`` enumerates when n <= 20 and uses CP-SAT otherwise.
    workers : int
        CP-SAT search workers (1 is deterministic for a given seed).
    proof_tolerance : float
        Status is ``"optimal"`` when E - lower_bound <= proof_tolerance * max(1, E); CP-SAT works on the
        objective rounded to integers (the largest coefficient scaled to 2^40) and its bound is reduced by
        the rounding excess, so a proof holds to about 1e-12 n^2 relative to the largest |w_j w_l H_jl|.

    Notes
    -----
    Enumeration: O(m 2^n n) time (Gray code), then an O(m K n) dynamic program for a layer budget. A time
    limit stops between blocks of rows: proven rows keep their optimum, the others the greedy mask, and
    the bound counts the proven rows only. CP-SAT: E = sum_j a_jj p_j + sum_{j<l} 2 a_jl y_jl with
    a_jl = w_j w_l H_jl, p_j = 1 if pruned and y_jl = p_j p_l linearized on the side the sign of a_jl
    needs; the greedy mask is the hint. Its bound is the solver's proven objective bound.

    >>> import rcprune
    >>> H = [[1.0, -0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = retention_exact(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=1, objective="masked"))
    >>> res.status, res.solution.mask.tolist(), round(res.cost, 6)
    ('optimal', [[False, False, True]], 0.2)
    """
    check_objective(instance, "retention-exact")
    clock = Stopwatch(time_limit)
    if backend not in BACKENDS:
        raise InvalidInstanceError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InvalidInstanceError(f"workers must be an integer >= 1, got {workers!r}")
    proof_tolerance = check_fraction(proof_tolerance, "proof_tolerance", allow_zero=True, allow_one=False)
    if backend == "auto":
        backend = "enumeration" if instance.n <= MAX_ENUMERATION_N else "cpsat"
    if backend == "enumeration":
        if instance.n > MAX_ENUMERATION_N:
            raise InvalidInstanceError(
                f"enumeration needs rows of n <= {MAX_ENUMERATION_N} weights, got n = {instance.n}; use backend='cpsat'")
        mask, bound, timed_out = _enumeration(instance, clock)
        info = {"backend": "enumeration"}
        iterations = instance.m * (1 << instance.n)
    else:
        mask, bound, timed_out, info = _cpsat(instance, clock, seed, int(workers))
        info["backend"] = "cpsat"
        iterations = 1
    if bound is None:  # stopped before any proof: E >= 0 still holds, H being positive semi-definite
        bound = 0.0
    return make_result(instance, RetentionSolution(mask), method="retention-exact", runtime=clock.elapsed(),
                                 iterations=iterations, lower_bound=bound, timed_out=timed_out, seed=seed,
                                 info=info, proof_tolerance=float(proof_tolerance))
