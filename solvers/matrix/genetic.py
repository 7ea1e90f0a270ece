"""A genetic algorithm over (row mask, column mask) genomes, repaired to the budget; a heuristic.

The population evolves by tournament selection, crossover and bit-flip mutation on each side; every child is
repaired to a feasible genome whose columns are the best ones for its rows, and the elite survives unchanged.
It proves nothing.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from rcprune.matrix import kernels
from rcprune.jit import jit
from rcprune.matrix.model import Instance, Solution, check_start
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_flag, check_int_option, check_real_option

from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

__all__ = ["genetic_search"]


@jit(nogil=True)
def _move_rows(rows, sums, count, add):
    """Add the ``count`` pruned rows with the largest ``sums`` (or drop the kept ones with the smallest);
    ties go to the lower index."""
    key = np.where(rows != add, -sums if add else sums, np.inf)
    order = np.argsort(key, kind="mergesort")
    for t in range(count):
        rows[order[t]] = add


@jit(nogil=True)
def _repair_and_score(scores, budget, fixed_rows, fixed_cols, row_totals, rows_pop, cols_pop, fitness):
    """Repair every genome in place and store its kept sum. O(m n) per genome.

    Rows: the count is clamped to 1..min(m, K) (fixed shape: set to r), adding or dropping rows by their sums
    over the genome's own columns. Columns: the top c by sums restricted to the rows, the optimal columns
    for them (c = min(n, K // r), or the fixed c). Budget form: while r < min(m, K // c), the best rows for
    the columns are added and the columns chosen again, so the shape ends Pareto-maximal.
    """
    population, m = rows_pop.shape
    n = cols_pop.shape[1]
    for p in range(population):
        rows, cols = rows_pop[p], cols_pop[p]
        r = rows.sum()
        target = fixed_rows if fixed_rows > 0 else min(max(r, 1), min(m, budget))
        if r != target:
            sums = kernels.restricted_row_sums(scores, cols) if cols.any() else row_totals
            _move_rows(rows, sums, abs(target - r), target > r)
        while True:
            c = fixed_cols if fixed_cols > 0 else min(n, budget // target)
            order = np.argsort(-kernels.restricted_col_sums(scores, rows), kind="mergesort")
            cols[:] = False
            for t in range(c):
                cols[order[t]] = True
            if fixed_rows > 0 or min(m, budget // c) == target:
                break
            _move_rows(rows, kernels.restricted_row_sums(scores, cols), min(m, budget // c) - target, True)
            target = min(m, budget // c)
        fitness[p] = kernels.kept_sum(scores, rows, cols)


def _check_options(instance, population, generations, mutation, crossover, elite, tournament, start, progress):
    population = check_int_option(population, "population", minimum=2)
    generations = check_int_option(generations, "generations", minimum=1)
    elite = check_int_option(elite, "elite", minimum=0)
    if elite >= population:
        raise InvalidInstanceError(f"elite ({elite}) must be smaller than the population ({population})")
    tournament = check_int_option(tournament, "tournament", minimum=1)
    if tournament > population:
        raise InvalidInstanceError(f"tournament ({tournament}) must not exceed the population ({population})")
    mutation = None if mutation is None else check_real_option(mutation, "mutation", high=1.0)
    if crossover not in ("uniform", "one-point"):
        raise InvalidInstanceError(f"crossover must be 'uniform' or 'one-point', got {crossover!r}")
    check_flag(progress, "progress")
    check_start(instance, start)
    return population, generations, mutation, elite, tournament


def _initial_population(instance: Instance, start_masks, size: int, rng: np.random.Generator):
    """The start (if any), mutants of it (half), and random genomes (rows at a random count)."""
    m, n = instance.m, instance.n
    rows = np.zeros((size, m), dtype=bool)
    cols = np.zeros((size, n), dtype=bool)
    first = 0
    if start_masks is not None:
        rows[:], cols[:] = start_masks
        first = size // 2
        flips = 3.0 / np.array([m, n])
        rows[1:first] ^= rng.random((first - 1, m)) < flips[0]
        cols[1:first] ^= rng.random((first - 1, n)) < flips[1]
    fixed = instance.fixed_shape
    for p in range(first, size):
        r = fixed[0] if fixed else int(rng.integers(1, min(m, instance.budget) + 1))
        rows[p, rng.choice(m, r, replace=False)] = True
        cols[p] = rng.random(n) < 0.5
    return rows, cols


def _crossover(a: np.ndarray, b: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        take_a = rng.random(a.shape) < 0.5
    else:
        cut = rng.integers(0, a.shape[1] + 1, size=(a.shape[0], 1))
        take_a = np.arange(a.shape[1]) < cut
    return np.where(take_a, a, b)


def genetic_search(instance: Instance, *, seed: int = 0, time_limit: float | None = None, population: int = 64,
                   generations: int = 200, mutation: float | None = None, crossover: str = "uniform",
                   elite: int = 2, tournament: int = 3, start="greedy", progress: bool = False) -> SolveResult:
    """Genetic search over row and column masks with an optimal column repair; a heuristic.

    Guarantee: none on the optimality gap. The result is feasible and never costs more than the start
    genome (it is in the first population and the best genome ever seen is returned). With
    ``start="greedy"`` the result carries greedy B's a-posteriori lower bound.

    Parameters
    ----------
    instance : Instance
    seed : int
        Seeds the one numpy generator that draws every random choice: same seed, same answer.
    time_limit : float, optional
        Checked between generations; the best solution so far is returned with status "time_limit".
    population : int
        Genomes per generation (at least 2).
    generations : int
        Generations after the first population.
    mutation : float, optional
        Per-bit flip probability; ``None`` is 1/m for the row mask and 1/n for the column mask.
    crossover : "uniform" or "one-point"
        Applied to each side separately.
    elite : int
        The best ``elite`` genomes enter the next generation unchanged.
    tournament : int
        Each parent is the fittest of ``tournament`` genomes drawn with replacement.
    start : "greedy", "random" or Solution
        "greedy" (greedy B) or a feasible Solution seeds the first population with itself and mutants
        of it (half the population); the rest, or all with "random", are random genomes.
    progress : bool
        Show a tqdm progress bar over the generations.

    Returns
    -------
    SolveResult
        ``iterations``: generations run; ``trace``: (seconds, generation, best cost) at each improvement;
        ``info``: start, start_cost, evaluations, population, lower_bound_source.

    Notes
    -----
    Repair (in numba, over the whole population): the row count is clamped to 1..min(m, K) (fixed shape:
    set to r) by adding or dropping rows ranked by their sums over the genome's own columns; the columns
    become the top c = min(n, K // r) by sums restricted to the rows (for those rows, the optimal columns);
    in the budget form, while r < min(m, K // c), the best rows for those columns are added and the
    columns chosen again. Fitness is the kept sum
    (:func:`rcprune.matrix.kernels.kept_sum`). O(P m n) per generation for a population of P.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> res = genetic_search(inst, population=8, generations=10)
    >>> res.solution, res.cost
    (Solution(rows=[0, 2], cols=[0, 2]), 4.0)
    """
    clock = Stopwatch(time_limit)
    population, generations, mutation, elite, tournament = _check_options(
        instance, population, generations, mutation, crossover, elite, tournament, start, progress)
    rng = np.random.default_rng(seed)
    info: dict = {"population": population}
    lower_bound, start_masks = None, None
    if isinstance(start, Solution):
        start_masks, info["start"] = (start.rows, start.cols), "solution"
    elif start == "greedy":
        greedy, info["start"] = greedy_row_column(instance), "greedy-row-column"
        start_masks, lower_bound = (greedy.solution.rows, greedy.solution.cols), greedy.lower_bound
        if lower_bound is not None:
            info["lower_bound_source"] = f"{info['start']} a-posteriori bound (the search proves nothing)"
    else:
        info["start"] = "random"

    fixed_rows, fixed_cols = instance.fixed_shape or (0, 0)
    m, n = instance.m, instance.n
    flip = np.array([mutation or 1.0 / m, mutation or 1.0 / n])

    def repaired(rows, cols):
        fitness = np.empty(rows.shape[0])
        _repair_and_score(instance.scores, instance.budget, fixed_rows, fixed_cols, instance.row_sums, rows, cols,
                          fitness)
        return fitness

    rows, cols = _initial_population(instance, start_masks, population, rng)
    fitness = repaired(rows, cols)
    if start_masks is not None:
        # The repaired start keeps at least as much (better columns, maybe more rows); the exact start
        # stays when rounding says otherwise, so the result never costs more than the start.
        start_kept = kernels.kept_sum(instance.scores, *start_masks)
        if start_kept >= fitness[0]:
            rows[0], cols[0], fitness[0] = *start_masks, start_kept
        info["start_cost"] = instance.total - start_kept
    best = int(np.argmax(fitness))
    best_rows, best_cols, best_kept = rows[best].copy(), cols[best].copy(), fitness[best]
    trace = [(clock.elapsed(), 0, instance.total - best_kept)]
    timed_out, generation = False, 0
    children = population - elite
    for generation in tqdm(range(1, generations + 1), disable=not progress, unit="gen", desc="genetic"):
        if clock.expired():
            timed_out, generation = True, generation - 1
            break
        contenders = rng.integers(0, population, size=(2, children, tournament))
        parents = np.take_along_axis(contenders, np.argmax(fitness[contenders], axis=2)[..., None], axis=2)[..., 0]
        child_rows = _crossover(rows[parents[0]], rows[parents[1]], crossover, rng)
        child_cols = _crossover(cols[parents[0]], cols[parents[1]], crossover, rng)
        child_rows ^= rng.random(child_rows.shape) < flip[0]
        child_cols ^= rng.random(child_cols.shape) < flip[1]
        child_fitness = repaired(child_rows, child_cols)
        keep = np.argsort(-fitness, kind="stable")[:elite]
        rows = np.concatenate([rows[keep], child_rows])
        cols = np.concatenate([cols[keep], child_cols])
        fitness = np.concatenate([fitness[keep], child_fitness])
        top = int(np.argmax(fitness))
        if fitness[top] > best_kept:
            best_rows, best_cols, best_kept = rows[top].copy(), cols[top].copy(), fitness[top]
            trace.append((clock.elapsed(), generation, instance.total - best_kept))
    info["evaluations"] = population + generation * children
    return make_result(instance, Solution(best_rows, best_cols), method="genetic", runtime=clock.elapsed(),
                       iterations=generation, lower_bound=lower_bound, timed_out=timed_out, trace=trace,
                       seed=seed, info=info)
