"""Genetic search for small-weight retention with cardinality-preserving operators.

A child keeps every weight its two parents both keep and fills the remaining budget with weights drawn
at random from those exactly one parent keeps; mutation swaps a kept weight with a pruned one. So every
individual keeps exactly k weights (per row, or in the layer). Parents are chosen by binary tournament;
parents and children compete for survival (mu + lambda), so the best individual never gets worse. The
population starts from the greedy mask and perturbations of it. It is a heuristic: it proves nothing.
"""
from __future__ import annotations

import numpy as np
from numba import prange
from tqdm.auto import tqdm

from rcprune import random_stream as rs
from rcprune.retention import kernels as rk
from rcprune.jit import jit
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution
from rcprune.validation import InvalidInstanceError

from rcprune.solvers import check_objective
from rcprune.solvers.retention.greedy import greedy_mask

__all__ = ["retention_genetic"]

GENERATION_CHUNK = 4   # generations between time-limit checks


@jit(nogil=True)
def _fitness(weights, h, ind, r0, rows, n):
    e = 0.0
    for r in range(rows):
        e += rk.row_error(weights[r0 + r], h, ind[r * n:(r + 1) * n])
    return e


@jit(nogil=True)
def _nth(ind, value, rank):
    """Position of the rank-th entry of ``ind`` equal to ``value``."""
    for t in range(ind.shape[0]):
        if ind[t] == value:
            if rank == 0:
                return t
            rank -= 1
    return -1


@jit(nogil=True)
def _swap(ind, k, rng, b):
    size = ind.shape[0]
    a = _nth(ind, True, rs.random_below(rng, b, k))
    c = _nth(ind, False, rs.random_below(rng, b, size - k))
    ind[a], ind[c] = False, True


@jit(parallel=True, nogil=True)
def _ga_init(weights, h, starts, popu, fit, k, pop, rows, rng):
    blocks, _, size = popu.shape
    n = weights.shape[1]
    for b in prange(blocks):
        for p in range(pop):
            popu[b, p] = starts[b]
            if p > 0 and 0 < k < size:
                for _ in range(1 + rs.random_below(rng, b, max(1, min(k, size - k)))):
                    _swap(popu[b, p], k, rng, b)
            fit[b, p] = _fitness(weights, h, popu[b, p], b * rows, rows, n)


@jit(parallel=True, nogil=True)
def _ga_run(weights, h, popu, fit, k, pop, rows, gens, mutation, rng):
    blocks, _, size = popu.shape
    n = weights.shape[1]
    for b in prange(blocks):
        if k == 0 or k == size:
            continue
        buf = np.empty(size, dtype=np.int64)
        for _ in range(gens):
            for c in range(pop):
                i1, i2 = rs.random_below(rng, b, pop), rs.random_below(rng, b, pop)
                p1 = i1 if fit[b, i1] <= fit[b, i2] else i2
                i1, i2 = rs.random_below(rng, b, pop), rs.random_below(rng, b, pop)
                p2 = i1 if fit[b, i1] <= fit[b, i2] else i2
                child = popu[b, pop + c]
                count, ndiff = 0, 0
                for t in range(size):
                    both = popu[b, p1, t] and popu[b, p2, t]
                    child[t] = both
                    count += both
                    if popu[b, p1, t] != popu[b, p2, t]:
                        buf[ndiff] = t
                        ndiff += 1
                for t in range(k - count):  # partial Fisher-Yates over the disagreements
                    r = t + rs.random_below(rng, b, ndiff - t)
                    buf[t], buf[r] = buf[r], buf[t]
                    child[buf[t]] = True
                if rs.random_uniform(rng, b) < mutation:
                    _swap(child, k, rng, b)
                fit[b, pop + c] = _fitness(weights, h, child, b * rows, rows, n)
            order = np.argsort(fit[b])
            survivors = popu[b][order[:pop]].copy()
            best = fit[b][order[:pop]].copy()
            popu[b, :pop] = survivors
            fit[b, :pop] = best


def retention_genetic(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None,
                      population: int = 24, generations: int = 60, mutation: float = 0.3,
                      progress: bool = False) -> SolveResult:
    """Genetic search (tournament, intersection-and-fill crossover, swap mutation, mu + lambda survival).

    Guarantee: never worse than the greedy mask it starts from (elitist survival), row by row in the
    row scope.

    Parameters
    ----------
    instance : RetentionInstance
    population : int
        Individuals per population (>= 2): one per row in the row scope (rows evolve independently and in
        parallel), one for the whole layer in the layer scope.
    generations : int
    mutation : float
        Probability that a child gets one random swap.
    progress : bool
        Show a tqdm progress bar over generations.

    Notes
    -----
    Each child costs O(L) to build and O(rows n^2) to evaluate (L = n per row, m n for the layer);
    a generation sorts 2 * population individuals. Time: O(generations * population * rows * n^2) per
    population. The time limit is checked every 4 generations.

    >>> import rcprune
    >>> H = [[1.0, -0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> res = retention_genetic(rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=1, objective="masked"), seed=1)
    >>> res.solution.mask.tolist(), round(res.cost, 6)
    ([[False, False, True]], 0.2)
    """
    check_objective(instance, "retention-genetic")
    clock = Stopwatch(time_limit)
    for name, value, low in (("population", population, 2), ("generations", generations, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInstanceError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(mutation, (int, float)) and 0.0 <= mutation <= 1.0):
        raise InvalidInstanceError(f"mutation must be a probability in [0, 1], got {mutation!r}")
    w, h = instance.weights, instance.hessian
    m, n = instance.shape
    start, timed_out = greedy_mask(instance, clock=clock)
    if instance.scope == "row":
        blocks, rows = m, 1
    else:
        blocks, rows = 1, m
    starts = start.reshape(blocks, rows * n)
    popu = np.zeros((blocks, 2 * population, rows * n), dtype=bool)
    fit = np.full((blocks, 2 * population), np.inf)
    rng = np.array([rs.stream_seed(seed, b) for b in range(blocks)], dtype=np.uint64)
    _ga_init(w, h, starts, popu, fit, instance.k, population, rows, rng)
    done = 0
    bar = tqdm(total=generations, disable=not progress, desc="retention-genetic", unit="gen")
    while done < generations and not timed_out:
        if clock.expired():
            timed_out = True
            break
        step = min(GENERATION_CHUNK, generations - done)
        _ga_run(w, h, popu, fit, instance.k, population, rows, step, float(mutation), rng)
        done += step
        bar.update(step)
    bar.close()
    mask = popu[:, 0].reshape(m, n).copy()
    worse = rk.row_errors(w, h, mask) > rk.row_errors(w, h, start)
    if instance.scope == "row":
        mask[worse] = start[worse]
    elif rk.row_errors(w, h, mask).sum() > rk.row_errors(w, h, start).sum():
        mask = start
    return make_result(instance, RetentionSolution(mask), method="retention-genetic", runtime=clock.elapsed(),
                                 iterations=done, seed=seed, timed_out=timed_out,
                                 info={"population": population, "generations": generations})
