"""Exact RC pruning by enumerating every subset of the smaller side.

Given the kept rows R, the best columns are the c with the largest sums restricted to R, for the largest
feasible c; so visiting every R (in Gray-code order: one row flipped per step) and selecting its best
columns solves the problem exactly. Upper bounds per subset size and per subset skip most selections.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from rcprune.matrix import kernels
from rcprune.jit import jit
from rcprune.matrix.model import Instance, Solution, evaluate
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_flag
from rcprune.bounds.surrogate import surrogate_bound
from rcprune.matrix.model import maximal_shapes
from rcprune.solvers.matrix.greedy_row_column import greedy_column_row, greedy_row_column

__all__ = ["exact_enumeration"]

_CHUNK_SECONDS = 0.05  # between clock checks: well inside the 10% time-limit slack
_RESYNC_SUBSETS = 1 << 16  # recompute the incremental sums this often, so rounding cannot drift


@jit
def _top_sum(values, buf, k):
    """(sum, smallest) of the k largest entries of ``values``, selected in ``buf`` (no allocation)."""
    n = values.shape[0]
    for j in range(n):
        buf[j] = values[j]
    target = min(k, n) - 1
    kernels.select_largest(buf[:n], target + 1)
    total, smallest = 0.0, np.inf
    for j in range(target + 1):
        total += buf[j]
        smallest = min(smallest, buf[j])
    return total, smallest


@jit
def _gray_chunk(scores, cols_for_size, size_bound, start, stop, member, col_sums, size, best, best_member,
                thresholds, buf):
    """Visit the Gray-code subsets ``start..stop-1`` (step t flips row ctz(t)); update the incumbent.

    ``col_sums``: column sums restricted to the current subset. ``size`` and ``best``: one-element arrays
    (subset size, best kept sum). ``thresholds[s]``: the c_s-th largest restricted sum at the last
    selection with s rows. For any t, top-c sum <= c t + sum_j max(v_j - t, 0), with equality at the
    c-th largest value; with t = thresholds[s] this bound is computed in the update pass itself and
    skips the selection for most subsets. Returns the number of subsets whose columns were selected.
    """
    n = scores.shape[1]
    s, kept_best, selected = size[0], best[0], 0
    for t in range(start, stop):
        i, x = 0, t
        while x & 1 == 0:
            x >>= 1
            i += 1
        sign = -1.0 if member[i] else 1.0
        member[i] = not member[i]
        s += 1 if member[i] else -1
        c = cols_for_size[s]
        if c == 0 or size_bound[s] <= kept_best:
            for j in range(n):
                col_sums[j] += sign * scores[i, j]
            continue
        tau = thresholds[s]
        excess = 0.0
        for j in range(n):
            v = col_sums[j] + sign * scores[i, j]
            col_sums[j] = v
            excess += max(v - tau, 0.0)
        if c * tau + excess <= kept_best:
            continue
        selected += 1
        kept, thresholds[s] = _top_sum(col_sums, buf, c)
        if kept > kept_best:
            kept_best = kept
            best_member[:] = member
    size[0], best[0] = s, kept_best
    return selected


def _size_bounds(scores: np.ndarray, cols_for_size: np.ndarray) -> np.ndarray:
    """``size_bound[s]``: an upper bound on the kept sum of any s rows (-inf for infeasible sizes).

    The minimum of the sum of the c_s largest per-column top-s sums and the sum of the s largest
    per-row top-c_s sums.
    """
    m = scores.shape[0]
    row_prefix = np.concatenate((np.zeros((m, 1)), np.cumsum(-np.sort(-scores, axis=1), axis=1)), axis=1)
    row_top = np.ascontiguousarray(row_prefix[:, cols_for_size])
    col_top = np.cumsum(-np.sort(-scores, axis=0), axis=0)
    size_bound = np.full(m + 1, -np.inf)
    for s in range(1, m + 1):
        c = int(cols_for_size[s])
        if c:
            by_cols = np.sort(col_top[s - 1])[::-1][:c].sum()
            by_rows = np.sort(row_top[:, s])[::-1][:s].sum()
            size_bound[s] = min(by_cols, by_rows)
    return size_bound


def _check_options(max_side, progress) -> None:
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise InvalidInstanceError(f"max_side must be a positive integer, got {max_side!r}")
    check_flag(progress, "progress")


def exact_enumeration(instance: Instance, *, seed: int = 0, time_limit: float | None = None,
                      max_side: int = 30, progress: bool = False) -> SolveResult:
    """Optimal RC pruning by enumerating the 2^min(m, n) subsets of the smaller side.

    Guarantee: on completion ``cost = OPT`` (status ``"optimal"``, ``lower_bound = cost``). Stopped by
    ``time_limit``, it returns the best solution found (never worse than greedy B and its mirror), status
    ``"time_limit"``, and ``lower_bound = max(surrogate bound, total - max_s size_bound[s]) <= OPT``.

    Parameters
    ----------
    instance : Instance
        Budget or fixed-shape form; transposed internally when m > n.
    seed
        Accepted for the common interface; the method is deterministic.
    time_limit : float, optional
        Seconds; checked between chunks of subsets (about 0.05 s each).
    max_side : int, default 30
        Refuse instances with min(m, n) > max_side (``InvalidInstanceError``): the work is 2^min(m, n).
    progress : bool, default False
        Show a tqdm bar over the subsets.

    Returns
    -------
    SolveResult
        ``iterations``: subsets visited. ``info``: ``transposed``, ``complete``, ``selected`` (subsets whose
        columns were selected), ``subsets`` (2^min(m, n)), ``incumbent`` (the greedy start: method, cost).

    Notes
    -----
    For kept rows R with |R| = s, the best columns are the top-c_s restricted column sums, where c_s is the
    largest feasible column count (sums are non-negative, so more columns never hurt). Subsets are visited
    in Gray-code order, so each step flips one row and updates the restricted sums in O(n). The same pass
    computes the bound ``top-c sum <= c t + sum_j max(v_j - t, 0)`` (exact when t is the c-th largest v)
    with t the threshold of the last selection at that size; only when it exceeds the incumbent does a
    quickselect (O(n) expected) compute the subset's value. Sizes whose bound (the sum of the c_s largest
    per-column top-s sums, or of the s largest per-row top-c_s sums) cannot beat the incumbent skip even
    that, and the search stops once no size can. Worst case O(2^min(m,n) max(m, n)), memory O(m n).
    See ``proofs/problem.md``, section "Optimal columns for fixed rows".

    >>> import rcprune
    >>> res = exact_enumeration(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=3))
    >>> res.solution, res.cost, res.status
    (Solution(rows=[0], cols=[0, 1, 2]), 5.0, 'optimal')
    """
    _check_options(max_side, progress)
    side = min(instance.m, instance.n)
    if side > max_side:
        raise InvalidInstanceError(
            f"exact enumeration visits 2^min(m, n) subsets; this {instance.m} x {instance.n} instance has "
            f"min(m, n) = {side} > max_side = {max_side} (raise max_side to try anyway)")
    clock = Stopwatch(time_limit)
    transpose = instance.m > instance.n
    scores = instance.scores_t if transpose else instance.scores
    m, n = scores.shape
    lead, other = maximal_shapes(instance, transpose)
    cols_for_size = np.zeros(m + 1, dtype=np.int64)
    cols_for_size[lead] = other
    size_bound = _size_bounds(scores, cols_for_size)

    incumbent = min((greedy_row_column(instance), greedy_column_row(instance)), key=lambda res: res.cost)
    member = np.array(incumbent.solution.cols if transpose else incumbent.solution.rows)
    best_member = member.copy()
    best = np.array([kernels.top_k_sum(kernels.restricted_col_sums(scores, member), cols_for_size[member.sum()])])
    member[:] = False
    size = np.zeros(1, dtype=np.int64)
    col_sums, thresholds, buf = np.zeros(n), np.zeros(m + 1), np.empty(n)

    subsets, visited, selected, chunk, last_sync = 1 << m, 1, 0, 1 << 8, 0
    timed_out = False
    with tqdm(total=subsets, unit="subset", disable=not progress, desc="enumeration") as bar:
        while visited < subsets and size_bound.max() > best[0]:
            if clock.expired():
                timed_out = True
                break
            if visited - last_sync >= _RESYNC_SUBSETS:
                col_sums[:] = kernels.restricted_col_sums(scores, member)
                last_sync = visited
            stop = min(subsets, visited + chunk)
            tic = time.perf_counter()
            selected += _gray_chunk(scores, cols_for_size, size_bound, visited, stop, member, col_sums, size, best,
                                    best_member, thresholds, buf)
            elapsed = time.perf_counter() - tic
            bar.update(stop - visited)
            visited = stop
            if elapsed < _CHUNK_SECONDS / 2:
                chunk *= 2
            elif elapsed > 2 * _CHUNK_SECONDS and chunk > 1:
                chunk //= 2

    restricted = kernels.restricted_col_sums(scores, best_member)
    best_other = np.zeros(n, dtype=bool)
    best_other[np.argsort(-restricted, kind="stable")[:cols_for_size[best_member.sum()]]] = True
    rows, cols = (best_other, best_member) if transpose else (best_member, best_other)
    solution = Solution(rows, cols)
    complete = not timed_out
    if complete:
        lower_bound = evaluate(instance, solution).cost
    else:
        lower_bound = max(surrogate_bound(instance).lower_bound, instance.total - float(size_bound.max()))
    info = {
        "transposed": transpose, "complete": complete, "selected": selected, "subsets": subsets,
        "incumbent": (incumbent.method, incumbent.cost),
    }
    return make_result(instance, solution, method="enumeration", runtime=clock.elapsed(), iterations=visited,
                       lower_bound=lower_bound, timed_out=timed_out, seed=seed, info=info)
