"""Simulated annealing over the kept row and column sets, with incremental O(1) swap deltas: the driver.

A chain walks from a start solution by swapping a kept row (column) with a pruned one, each of the
r(m - r) + c(n - c) swaps equally likely, and, in the budget form, by reshaping to a neighbouring Pareto
shape (more rows and fewer columns, or the reverse). Moves are accepted by the Metropolis rule under
geometric cooling. It is a heuristic: it proves nothing.

This module checks the options once (:class:`AnnealingOptions`), starts and schedules the chains, runs
them chunk by chunk within the time limit, and polishes and picks the result. The moves are in
:mod:`~rcprune.solvers.matrix.annealing_moves`, a chain's state and numba kernel in
:mod:`~rcprune.solvers.matrix.annealing_chain`, its numpy reference (``local_annealing_numpy``,
``move_stats(impl="numpy")``) in :mod:`~rcprune.solvers.matrix.annealing_reference`, start and polish in
:mod:`~rcprune.solvers.matrix.annealing_start`.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from rcprune.matrix import kernels
from rcprune.matrix.model import Instance, Solution, check_start
from rcprune.random_stream import stream_seed
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_flag, check_int_option, check_real_option

from rcprune.solvers.matrix.annealing_chain import ACCEPTED, BEST, DONE, Chain, resolve_precision
from rcprune.solvers.matrix.annealing_reference import NumpyChain
from rcprune.solvers.matrix.annealing_start import best_response, make_maximal, start_masks
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

__all__ = ["AnnealingOptions", "local_annealing", "local_annealing_numpy", "move_rate", "move_stats"]

START_ACCEPTANCE = 0.5       # calibrated t0 accepts the mean worsening move with this probability
T_END_RATIO = 1e-3           # default t_end = t0 * T_END_RATIO
_CHAINS = {"numba": Chain, "numpy": NumpyChain}


@dataclass(frozen=True)
class AnnealingOptions:
    """The options of :func:`local_annealing` (see its parameters), built by :meth:`checked`.

    >>> import rcprune
    >>> inst = rcprune.Instance(np.ones((2, 3)), budget=4)
    >>> AnnealingOptions.checked(inst, moves=100, restarts=1).precision
    'float32'
    >>> AnnealingOptions.checked(inst, moves=10, restarts=10)
    Traceback (most recent call last):
    ...
    rcprune.validation.InvalidInstanceError: restarts (10) must be fewer than moves (10)
    """

    moves: int = 1_000_000
    chains: int = 1
    t0: float | None = None
    t_end: float | None = None
    restarts: int = 0
    start: str | Solution = "greedy"
    polish: bool = True
    parallel: bool = False
    progress: bool = False
    precision: str = "auto"

    @classmethod
    def checked(cls, instance: Instance, **options) -> AnnealingOptions:
        """The options (defaults for those not given), checked against ``instance``, with ``precision``
        resolved; raises InvalidInstanceError on a bad one. O(1), plus O(m n) for a Solution start and the
        first float32 copy of the scores."""
        o = cls(**options)
        moves = check_int_option(o.moves, "moves", minimum=1)
        chains = check_int_option(o.chains, "chains", minimum=1)
        restarts = check_int_option(o.restarts, "restarts", minimum=0)
        if restarts >= moves:
            raise InvalidInstanceError(f"restarts ({restarts}) must be fewer than moves ({moves})")
        t0 = None if o.t0 is None else check_real_option(o.t0, "t0")
        t_end = None if o.t_end is None else check_real_option(o.t_end, "t_end")
        if t0 is not None and t_end is not None and t_end > t0:
            raise InvalidInstanceError(f"t_end ({t_end}) must not exceed t0 ({t0})")
        for name in ("polish", "parallel", "progress"):
            check_flag(getattr(o, name), name)
        check_start(instance, o.start)
        return replace(o, moves=moves, chains=chains, t0=t0, t_end=t_end, restarts=restarts,
                       precision=resolve_precision(instance, o.precision))


def _calibrated_t0(chain: Chain, instance: Instance) -> float:
    """t0 at which the mean worsening proposal is accepted with probability START_ACCEPTANCE."""
    worse = chain.calibrate()
    floor = 1e-12 * max(instance.total / (instance.m * instance.n), 1e-300)
    return max(worse / math.log(1.0 / START_ACCEPTANCE), floor)


def _chunk_size(spent: float, moves: float, current: int, remaining: float, target: float = 0.05) -> int:
    """Moves per chain for the next round: about ``target`` seconds, and not past the deadline."""
    if spent <= 0 or moves <= 0:
        return current * 2
    per_move = spent / moves
    return int(max(1000, min(target / per_move, current * 4, remaining / per_move, 1 << 24)))


def _exact_cost(instance: Instance, chain: Chain) -> float:
    """The cost of the chain's best masks on the float64 scores (the chain's own sums may read float32)."""
    return instance.total - kernels.kept_sum(instance.scores, chain.best_rows, chain.best_cols)


def _drive(runs: list, clock: Stopwatch, options: AnnealingOptions, desc: str, instance: Instance):
    """Run the chains chunk by chunk until done or out of time; return (timed_out, trace).

    The trace holds exact costs: when a chain's best improves (by its own sums), its best masks are
    evaluated on the float64 scores, and the cost enters the trace if it is lower than the last one."""
    best_kept = max(ch.reals[BEST] for ch in runs)
    trace = [(clock.elapsed(), 0, min(_exact_cost(instance, ch) for ch in runs))]
    chunk, timed_out = 1000, False
    pool = ThreadPoolExecutor(max_workers=min(len(runs), 8)) if options.parallel and len(runs) > 1 else None
    bar = tqdm(total=sum(ch.total_moves for ch in runs), disable=not options.progress, unit="move", desc=desc)
    try:
        while not all(ch.done for ch in runs):
            if clock.expired():
                timed_out = True
                break
            active = [ch for ch in runs if not ch.done]
            before = sum(int(ch.counts[DONE]) for ch in runs)
            tic = time.perf_counter()
            if pool is not None:
                list(pool.map(lambda ch: ch.run(chunk), active))
            else:
                for ch in active:
                    ch.run(chunk)
            spent = time.perf_counter() - tic
            done = sum(int(ch.counts[DONE]) for ch in runs)
            bar.update(done - before)
            chunk = _chunk_size(spent, (done - before) / len(active), chunk, clock.remaining())
            kept_now = max(ch.reals[BEST] for ch in runs)
            if kept_now > best_kept:
                best_kept = kept_now
                cost = min(_exact_cost(instance, ch) for ch in runs)
                if cost < trace[-1][2]:
                    trace.append((clock.elapsed(), done, cost))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return timed_out, trace


def _scheduled_chain(instance: Instance, rows, cols, rng_state: int, impl: str, options: AnnealingOptions):
    """A chain from the start masks completed to a Pareto shape, its cooling scheduled (t0 calibrated
    unless given)."""
    chain = _CHAINS[impl](instance, *make_maximal(instance, rows, cols), rng_state, options.precision)
    start_t = options.t0 if options.t0 is not None else _calibrated_t0(chain, instance)
    end_t = options.t_end if options.t_end is not None else start_t * T_END_RATIO
    chain.schedule(start_t, min(start_t, end_t), options.moves, options.restarts)
    return chain


def _anneal(instance: Instance, options: AnnealingOptions, *, seed: int, clock: Stopwatch, impl: str,
            method: str) -> SolveResult:
    info: dict = {"chains": options.chains, "moves_per_chain": options.moves, "restarts": options.restarts,
                  "impl": impl, "precision": options.precision}
    starts, lower_bound = start_masks(instance, options.start, seed, options.chains, info)
    info["start_cost"] = instance.total - kernels.kept_sum(instance.scores, *starts[0])
    runs = [_scheduled_chain(instance, *st, stream_seed(seed, i), impl, options) for i, st in enumerate(starts)]
    info["t0"], info["t_end"] = runs[0].t0, runs[0].t_end
    timed_out, trace = _drive(runs, clock, options, method, instance)

    # The start (every chain's start when they share one) is a candidate: the result never costs more.
    candidates = [starts[0]] + [(ch.best_rows, ch.best_cols) for ch in runs]
    kept = [kernels.kept_sum(instance.scores, r, c) for r, c in candidates]
    if options.polish:  # only the best chain when out of time: the polish is O(m n) per round
        chosen = range(1, options.chains + 1) if not timed_out else [int(np.argmax(kept[1:])) + 1]
        polished = [best_response(instance, *candidates[i]) for i in chosen]
        info["polish_gain"] = float(max(kernels.kept_sum(instance.scores, r, c) for r, c in polished) - max(kept))
        candidates += polished
        kept += [kernels.kept_sum(instance.scores, r, c) for r, c in polished]
    best = int(np.argmax(kept))  # the first of the best: the start wins ties, then the lower chain
    iterations = sum(int(ch.counts[DONE]) for ch in runs)
    accepted = sum(int(ch.counts[ACCEPTED]) for ch in runs)
    info.update(accepted=accepted, acceptance_rate=accepted / max(iterations, 1))
    if instance.total - kept[best] < trace[-1][2]:
        trace.append((clock.elapsed(), iterations, instance.total - kept[best]))
    return make_result(instance, Solution(*candidates[best]), method=method, runtime=clock.elapsed(),
                       iterations=iterations, lower_bound=lower_bound, timed_out=timed_out, trace=trace,
                       seed=seed, info=info)


def local_annealing(instance: Instance, *, seed: int = 0, time_limit: float | None = None,
                    moves: int = 1_000_000, chains: int = 1, t0: float | None = None, t_end: float | None = None,
                    restarts: int = 0, start="greedy", polish: bool = True, parallel: bool = False,
                    progress: bool = False, precision: str = "auto") -> SolveResult:
    """Simulated annealing with swap and reshape moves and O(1) swap deltas; a heuristic.

    Guarantee: none on the optimality gap. The result is feasible and never costs more than the start
    solution (it is one of the candidates). With ``start="greedy"`` the result carries greedy B's
    a-posteriori lower bound (``info["lower_bound_source"]``); annealing itself proves nothing.

    Parameters
    ----------
    instance : Instance
    seed : int
        Chain ``i`` draws from a splitmix64 stream seeded by a hash of ``(seed, i)``: the same seed gives
        the same answer, however the moves are chunked and with ``parallel`` on or off.
    time_limit : float, optional
        Seconds, checked between chunks of moves (each sized to take about 0.05 s); the best solution so
        far is returned with status "time_limit".
    moves : int
        Proposals per chain, restarts included.
    chains : int
        Independent chains (each its own stream); the best wins, ties to the lower index.
    t0, t_end : float, optional
        Start and end temperature of the geometric cooling ``T <- T * (t_end / t0) ** (1 / run)`` per
        move. ``t0=None`` calibrates it per chain: 2000 proposals are drawn from the start and the mean
        kept-sum loss of the worsening ones is accepted with probability 1/2. ``t_end=None`` is
        ``t0 / 1000``.
    restarts : int
        The moves are split into ``restarts + 1`` equal runs; each later run reheats to ``t0`` from the
        chain's best solution.
    start : "greedy", "random" or Solution
        "greedy": greedy B (:func:`rcprune.solvers.matrix.greedy_row_column.greedy_row_column`) for every
        chain; "random": a random shape and random rows and columns per chain; or a feasible Solution. A
        budget-form start is first completed to a Pareto shape
        (:func:`rcprune.solvers.matrix.annealing_start.make_maximal`), which never costs more.
    polish : bool
        Finish each chain's best with alternating exact best responses
        (:func:`rcprune.solvers.matrix.annealing_start.best_response`).
    parallel : bool
        Run the chains in a thread pool (the numba loop releases the GIL).
    progress : bool
        Show a tqdm progress bar over the moves.
    precision : "auto", "float32" or "float64"
        The scores the chain's moves read. "float32": :attr:`rcprune.Instance.scores_float32`, half the
        memory traffic of an accepted swap, each score rounded by at most 2**-24 of itself, so moves whose
        deltas differ by less than that may be ranked the other way; "float64": the scores as given;
        "auto" (default): float32 when every non-zero score lies in float32's normal range, else float64.
        Sums are float64 either way, and the candidates are compared, and the cost reported, on the
        float64 scores.

    Raises
    ------
    InvalidInstanceError
        On a bad option (:meth:`AnnealingOptions.checked`).

    Returns
    -------
    SolveResult
        ``iterations``: moves over all chains; ``trace``: (seconds, moves so far, best cost) at each
        improvement, checked between chunks; ``info``: start, start_cost, precision, t0 and t_end
        (of chain 0), accepted, acceptance_rate, polish_gain, lower_bound_source.

    Notes
    -----
    A chain keeps its masks, kept-first permutations of the rows and columns (a uniform kept or pruned
    index in O(1)), and the restricted sums of :mod:`rcprune.matrix.kernels` (``row_sums`` over the kept columns,
    ``col_sums`` over the kept rows). Moves:

    * swap a kept row (column) with a pruned one, each of the r (m - r) + c (n - c) swap neighbours
      equally likely (rows with probability r (m - r) / (r (m - r) + c (n - c))): delta O(1), applied
      (when accepted) in O(n) (O(m));
    * budget form only, with probability min(5%, 32 / (m + n)): reshape to the next or previous Pareto
      shape (:func:`rcprune.solvers.matrix.annealing_moves.pareto_shapes`), greedily -- grow adds the
      pruned rows with the largest sums and drops the kept columns that keep the least with them; shrink
      drops the kept rows with the smallest sums and adds the pruned columns that keep the most. Delta
      O(m + k n) plus the selections (a heap when few of many, else quickselect; O(m + n) expected),
      cached until the state changes; applied in O(k n + d m) for k rows and d columns.

    Metropolis acceptance ``min(1, exp(delta / T))`` on the kept sum; a move worse than ``40 T`` is
    rejected without a draw. The restricted sums are recomputed exactly (O(m n)) every
    ``max(2**18, 4 m n)`` moves to bound floating-point drift. No allocation per move. The pieces:
    :mod:`~rcprune.solvers.matrix.annealing_moves` (the moves),
    :mod:`~rcprune.solvers.matrix.annealing_chain` (a chain's state and its numba kernel),
    :mod:`~rcprune.solvers.matrix.annealing_start` (start and polish); this module drives the chains.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> res = local_annealing(inst, moves=2000)
    >>> res.solution, res.cost
    (Solution(rows=[0, 2], cols=[0, 2]), 4.0)
    """
    clock = Stopwatch(time_limit)
    options = AnnealingOptions.checked(instance, moves=moves, chains=chains, t0=t0, t_end=t_end, restarts=restarts,
                                       start=start, polish=polish, parallel=parallel, progress=progress,
                                       precision=precision)
    return _anneal(instance, options, seed=seed, clock=clock, impl="numba", method="annealing")


def local_annealing_numpy(instance: Instance, *, seed: int = 0, time_limit: float | None = None,
                          moves: int = 100_000, chains: int = 1, t0: float | None = None,
                          t_end: float | None = None, restarts: int = 0, start="greedy", polish: bool = True,
                          progress: bool = False, precision: str = "auto") -> SolveResult:
    """The same chain as :func:`local_annealing` in a Python loop with numpy vector operations
    (:class:`~rcprune.solvers.matrix.annealing_reference.NumpyChain`).

    A reference for tests and benchmarks: same random stream, same moves, same answer on integer scores
    (float sums may round differently). Sequential chains only.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 0, 1], [0, 4, 0], [1, 0, 3]], budget=4)
    >>> local_annealing_numpy(inst, moves=200).solution == local_annealing(inst, moves=200).solution
    True
    """
    clock = Stopwatch(time_limit)
    options = AnnealingOptions.checked(instance, moves=moves, chains=chains, t0=t0, t_end=t_end, restarts=restarts,
                                       start=start, polish=polish, progress=progress, precision=precision)
    return _anneal(instance, options, seed=seed, clock=clock, impl="numpy", method="annealing-numpy")


def move_stats(instance: Instance, moves: int = 1_000_000, seed: int = 0, impl: str = "numba",
               precision: str = "auto") -> dict:
    """Time one default chain (greedy B start, calibrated t0) over ``moves`` moves, the chain loop only.

    ``impl`` is "numba" or "numpy": both run the same moves on the same scores (``precision``, as in
    :func:`local_annealing`), so their rates compare like for like. Returns ``{"moves_per_second",
    "acceptance_rate", "seconds", "impl", "precision"}``; numba is compiled (or loaded from its cache)
    before the timing. O(moves) time for numba; numpy adds Python overhead per move.
    """
    if impl not in _CHAINS:
        raise InvalidInstanceError(f"impl must be 'numba' or 'numpy', got {impl!r}")
    options = AnnealingOptions.checked(instance, moves=moves, precision=precision)
    greedy = greedy_row_column(instance)
    rows, cols = greedy.solution.rows, greedy.solution.cols
    chain, warm = (_scheduled_chain(instance, rows, cols, stream_seed(seed, i), impl, replace(options, moves=length))
                   for i, length in enumerate((options.moves, 10)))
    warm.run(10)
    tic = time.perf_counter()
    chain.run(options.moves)
    seconds = time.perf_counter() - tic
    return {"moves_per_second": options.moves / seconds,
            "acceptance_rate": int(chain.counts[ACCEPTED]) / options.moves,
            "seconds": seconds, "impl": impl, "precision": chain.precision}


def move_rate(instance: Instance, moves: int = 1_000_000, seed: int = 0, impl: str = "numba") -> float:
    """Moves per second of one default annealing chain: ``move_stats(...)["moves_per_second"]``.

    >>> import rcprune
    >>> move_rate(rcprune.Instance(np.ones((4, 6)), budget=8), moves=1000) > 0
    True
    """
    return move_stats(instance, moves, seed, impl)["moves_per_second"]
