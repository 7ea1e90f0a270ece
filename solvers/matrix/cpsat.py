"""Exact RC pruning as a 0/1 integer program, solved by OR-Tools CP-SAT.

Binary keep-variables for rows (x), columns (y) and kept entries (z = x AND y, linearized) maximize the
kept sum under the budget; CP-SAT's objective bound turns into a proven lower bound on the pruned cost.
The same model can be written as an MPS or LP file for other MIP solvers.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from ortools.linear_solver.python import model_builder
from ortools.sat.python import cp_model

from rcprune.matrix import kernels
from rcprune.files import atomic_write_bytes
from rcprune.matrix.model import Instance, Solution, evaluate
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column
from rcprune.validation import InvalidInstanceError, check_budget, check_int_option, check_real_option

__all__ = ["cpsat"]

DEFAULT_SCALED_TOTAL = 2.0 ** 40
# Beyond 2^52, rounding s * scale is no longer exact in float64 and CP-SAT's int64 sums lose headroom.
MAX_SCALED_TOTAL = 2.0 ** 52
EXPORT_FORMATS = (".mps", ".lp")
# Full-problem strategies for workers > 1, best first: CP-SAT's own portfolio leaves out max_lp below
# 8 workers, which made laplace-12x16 15x slower with 2 workers than with 1.
PORTFOLIO = ("max_lp", "quick_restart", "default_lp", "core", "no_lp")
_EPS = float(np.finfo(np.float64).eps)


def _scaled_scores(scores: np.ndarray, total: float, scale: float | None) -> tuple[np.ndarray, float, float]:
    """Integer scores ``q = round(S * scale)``, the scale, and ``err = max |S_ij - q_ij / scale|``.

    The scale is a power of two in [2^-1000, 2^1000], so S * scale and q / scale are exact in float64
    (or underflow only where q = 0) and ``err`` is computed exactly: 0 for integer scores and scale 1.
    """
    if scale is None:
        exponent = 40 - math.frexp(total)[1] if total > 0 else 0  # total * scale < 2^40
        if np.array_equal(scores, np.rint(scores)):
            exponent = min(exponent, 0)
        scale = 2.0 ** min(max(exponent, -1000), 1000)
    elif total * scale > MAX_SCALED_TOTAL:
        raise InvalidInstanceError(
            f"scale {scale!r} makes the scaled total {total * scale:.3g} exceed 2^52; use a smaller scale")
    q = np.rint(scores * scale)
    err = float(np.max(np.abs(scores - q / scale)))
    return q.astype(np.int64), float(scale), err


def _add_keep_model(model, m: int, n: int, budget: int, shape: tuple[int, int] | None,
                    clock: Stopwatch | None = None):
    """Add x, y, z and the linear constraints to a CP-SAT or a model_builder model (same method names).

    Core: z_ij <= x_i, z_ij <= y_j, z_ij >= x_i + y_j - 1, sum z <= K. A fixed shape (r, c) adds
    sum x = r, sum y = c and the linking equalities sum_j z_ij = c x_i, sum_i z_ij = r y_j, valid because
    z_ij = x_i y_j; they make the LP relaxation much tighter. Returns None if ``clock`` expires first.
    """
    x = [model.new_bool_var(f"x_{i}") for i in range(m)]
    y = [model.new_bool_var(f"y_{j}") for j in range(n)]
    z = [[model.new_bool_var(f"z_{i}_{j}") for j in range(n)] for i in range(m)]
    for i in range(m):
        for j in range(n):
            model.add(z[i][j] <= x[i])
            model.add(z[i][j] <= y[j])
            model.add(z[i][j] >= x[i] + y[j] - 1)
        if clock is not None and clock.expired():
            return None
    model.add(sum(v for row in z for v in row) <= budget)
    if shape is not None:
        r, c = shape
        model.add(sum(x) == r)
        model.add(sum(y) == c)
        for i in range(m):
            model.add(sum(z[i]) == c * x[i])
        for j in range(n):
            model.add(sum(z[i][j] for i in range(m)) == r * y[j])
    return x, y, z


def _export(path: Path, instance: Instance) -> None:
    """Write the linear model with the real-valued scores as objective (maximize the kept sum)."""
    model = model_builder.Model()
    _, _, z = _add_keep_model(model, instance.m, instance.n, instance.budget, instance.fixed_shape)
    entries = [(v, float(s)) for row, srow in zip(z, instance.scores) for v, s in zip(row, srow) if s > 0]
    model.maximize(model_builder.LinearExpr.weighted_sum([v for v, _ in entries], [s for _, s in entries]))
    text = model.export_to_mps_string() if path.suffix.lower() == ".mps" else model.export_to_lp_string()
    atomic_write_bytes(path, text.encode())


def _cpsat_model(instance: Instance, q: np.ndarray, hint: Solution | None, clock: Stopwatch,
                 kept_range: tuple[int | None, int | None] = (None, None)):
    """The CP-SAT model: the keep model, the product constraint (budget form), objective and hint.

    ``kept_range``: optional integer bounds ``lo <= sum q z <= hi`` on the scaled objective (the cutoff
    and the cut of :func:`_objective_range`).

    Returns None if the time limit runs out while building it (O(mn) Python calls: seconds for 10^5 entries).
    """
    m, n, budget = instance.m, instance.n, instance.budget
    model = cp_model.CpModel()
    variables = _add_keep_model(model, m, n, budget, instance.fixed_shape, clock)
    if variables is None:
        return None
    x, y, z = variables
    if instance.fixed_shape is None:
        kept_rows, kept_cols = model.new_int_var(0, m, "kept_rows"), model.new_int_var(0, n, "kept_cols")
        kept_count = model.new_int_var(0, budget, "kept_count")
        model.add(kept_rows == sum(x))
        model.add(kept_cols == sum(y))
        model.add_multiplication_equality(kept_count, [kept_rows, kept_cols])
        model.add(kept_count == sum(v for row in z for v in row))
        if hint is not None:
            r, c = hint.shape
            for var, value in ((kept_rows, r), (kept_cols, c), (kept_count, r * c)):
                model.add_hint(var, value)
    terms = [(z[i][j], int(q[i, j])) for i, j in zip(*np.nonzero(q))]
    objective = cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [w for _, w in terms])
    lo, hi = kept_range
    if lo is not None:
        model.add(objective >= lo)
    if hi is not None:
        model.add(objective <= hi)
    model.maximize(objective)
    if hint is not None:
        for i in range(m):
            model.add_hint(x[i], bool(hint.rows[i]))
            for j in range(n):
                model.add_hint(z[i][j], bool(hint.rows[i] and hint.cols[j]))
        for j in range(n):
            model.add_hint(y[j], bool(hint.cols[j]))
    return None if clock.expired() else (model, x, y)


class _Trace(cp_model.CpSolverSolutionCallback):
    """Records (seconds, solution number, cost) for every improving solution CP-SAT reports."""

    def __init__(self, instance: Instance, rows, cols, clock: Stopwatch):
        super().__init__()
        self.instance, self.rows, self.cols, self.clock = instance, rows, cols, clock
        self.trace: list = []

    def on_solution_callback(self) -> None:
        rows = np.array([self.boolean_value(v) for v in self.rows])
        cols = np.array([self.boolean_value(v) for v in self.cols])
        kept = kernels.kept_sum(self.instance.scores, rows, cols)
        self.trace.append((self.clock.elapsed(), len(self.trace) + 1, max(self.instance.total - kept, 0.0)))


class _Outcome(NamedTuple):
    solution: Solution
    lower_bound: float
    branches: int
    trace: list
    facts: dict


def _solve(instance: Instance, built, scale: float, err: float, greedy: SolveResult, seed: int,
           workers: int, progress: bool, clock: Stopwatch, cutoff_scaled: int | None = None) -> _Outcome:
    """Run CP-SAT; keep the better of its solution and greedy's, and the better lower bound.

    With ``cutoff_scaled`` (the model holds ``sum q z >= cutoff_scaled``) INFEASIBLE is a proof that every
    solution keeps at most ``cutoff_scaled - 1`` (scaled), and a bound found under the cutoff is at
    least that: the kept-sum bound is ``max(B, cutoff_scaled - 1)`` either way.
    """
    model, x, y = built
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.random_seed = seed % 2 ** 31
    params.num_workers = workers
    params.linearization_level = 2
    if workers > 1:
        params.subsolvers.extend(PORTFOLIO)
    params.log_search_progress = bool(progress)
    if clock.time_limit is not None:
        params.max_time_in_seconds = max(clock.remaining(), 1e-3)
    callback = _Trace(instance, x, y, clock)
    status = solver.solve(model, callback)
    if status == cp_model.MODEL_INVALID or (status == cp_model.INFEASIBLE and cutoff_scaled is None):
        raise RuntimeError(f"cpsat: CP-SAT reported {solver.status_name(status)} on a feasible model")
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)  # without a solution, the bound reads 0
    solution, lower_bound = greedy.solution, greedy.lower_bound
    if found:
        best = Solution([solver.boolean_value(v) for v in x], [solver.boolean_value(v) for v in y])
        if evaluate(instance, best).cost <= greedy.cost:
            solution = best
        kept_bound = solver.best_objective_bound
        if cutoff_scaled is not None:
            kept_bound = max(kept_bound, cutoff_scaled - 1)
        bound = instance.total - kept_bound / scale - instance.budget * err
        lower_bound = max(lower_bound, bound)
    elif status == cp_model.INFEASIBLE:  # no solution keeps cutoff_scaled or more
        lower_bound = max(lower_bound, instance.total - (cutoff_scaled - 1) / scale - instance.budget * err)
    facts = {
        "cpsat_status": solver.status_name(status),
        "objective_scaled": solver.objective_value if found else None,
        "best_bound_scaled": solver.best_objective_bound if found else None,
        "num_conflicts": solver.num_conflicts,
    }
    return _Outcome(solution, lower_bound, solver.num_branches, callback.trace, facts)


def _objective_range(target: Instance, q: np.ndarray, scale: float, err: float, cost_bound, cutoff,
                     slack: float) -> tuple[int | None, int | None]:
    """Integer bounds on the scaled kept sum ``sum q z`` implied by a proven cost bound and a cost cutoff.

    Every solution keeps ``kept <= T - cost_bound`` and ``|kept - sum q z / scale| <= K err``, so
    ``sum q z <= scale (T - cost_bound + K err + slack)`` holds for all of them (a cut). A solution with
    ``cost <= cutoff`` has ``sum q z >= scale (T - cutoff - K err - slack)``; only those are searched.
    ``slack`` plus 8 eps (T + |bound|) absorbs the float rounding of these expressions; the sum being an
    integer, the bounds are then rounded inwards (floor and ceil).
    """
    total, kerr = target.total, target.budget * err
    positive = int(q[q > 0].sum())
    hi = lo = None
    if cost_bound is not None:
        room = slack + 8 * _EPS * (total + abs(cost_bound))
        hi = math.floor(scale * (total - cost_bound + kerr + room))
        hi = hi if 0 <= hi < positive else None
    if cutoff is not None:
        room = slack + 8 * _EPS * (total + abs(cutoff))
        lo = math.ceil(scale * (total - cutoff - kerr - room))
        # above every reachable sum (a cutoff below any cost): keep it an int64 that still proves infeasibility
        lo = min(lo, positive + 1) if lo > 0 else None
    return lo, hi


def _check_options(instance: Instance, workers, scale, export, shape) -> tuple:
    workers = check_int_option(workers, "workers", minimum=1)
    if scale is not None:
        scale = check_real_option(scale, "scale", 2.0 ** -1001, 2.0 ** 1000)
        if math.frexp(scale)[0] != 0.5:
            raise InvalidInstanceError(f"scale must be a power of two (exact in float64), got {scale!r}")
    if export is not None:
        if not isinstance(export, (str, os.PathLike)):
            raise InvalidInstanceError(f"export must be a file path ending in .mps or .lp, got {export!r}")
        export = Path(export)
        if export.suffix.lower() not in EXPORT_FORMATS:
            raise InvalidInstanceError(f"export path {str(export)!r} must end in .mps or .lp")
    if shape is not None:
        _, shape = check_budget(instance.m, instance.n, shape=shape)
        if instance.fixed_shape is not None and shape != instance.fixed_shape:
            raise InvalidInstanceError(
                f"shape {shape} differs from the instance's fixed shape {instance.fixed_shape}")
        if shape[0] * shape[1] > instance.budget:
            raise InvalidInstanceError(
                f"shape {shape} keeps {shape[0] * shape[1]} entries, more than the budget {instance.budget}")
    return workers, scale, export, shape


def cpsat(instance: Instance, *, seed: int = 0, time_limit: float | None = None, workers: int = 1,
          scale: float | None = None, hint: bool = True, export=None, shape: tuple[int, int] | None = None,
          progress: bool = False, cost_bound: float | None = None, cutoff: float | None = None) -> SolveResult:
    r"""Solve RC pruning exactly with the CP-SAT solver on a 0/1 integer program.

    Model: binary :math:`x_i` (keep row i), :math:`y_j` (keep column j), :math:`z_{ij}` (keep entry ij) with

    .. math::
        z_{ij} \le x_i,\quad z_{ij} \le y_j,\quad z_{ij} \ge x_i + y_j - 1,\quad \sum_{ij} z_{ij} \le K,
        \qquad \max \sum_{ij} q_{ij} z_{ij},\quad q_{ij} = \mathrm{round}(S_{ij} \cdot \mathrm{scale}),

    so :math:`z_{ij} = x_i y_j` and :math:`\sum z = |R|\,|C|` (``proofs/problem.md``, "The single-matrix
    problem"). Budget form: CP-SAT also gets the valid product constraint
    :math:`\sum z = (\sum x)(\sum y)`; fixed shape: see the linking equalities below.

    Guarantee: with :math:`\varepsilon = \max_{ij} |S_{ij} - q_{ij}/\mathrm{scale}|` and CP-SAT's bound
    :math:`B \ge \max \sum q z`, every feasible :math:`(R, C)` keeps at most
    :math:`B/\mathrm{scale} + K\varepsilon`, so

    .. math:: \mathrm{lower\_bound} = \max(T - B/\mathrm{scale} - K\varepsilon,\ L_B) \le \mathrm{OPT},

    where :math:`L_B` is greedy B's surrogate bound (``proofs/approximation.md``, "The surrogate and the
    a-posteriori bound").

    Status ``"optimal"`` iff ``cost - lower_bound <= scaling_tolerance`` :math:`= 2K\varepsilon` (plus float64
    summation slack): the solution is then optimal up to the scaling tolerance, which is 0 for integer
    scores (an exact proof). CP-SAT's own OPTIMAL (which it may report at a gap limit) is not trusted.

    Parameters
    ----------
    instance : Instance
    seed : int
        CP-SAT ``random_seed`` (taken modulo 2^31). With ``workers=1`` and no time limit reached, the
        result is deterministic.
    time_limit : float, optional
        Seconds for the whole call (model building included); CP-SAT gets what is left. When it stops
        CP-SAT before a proof, the status is ``"time_limit"`` with the best solution found.
    workers : int
        CP-SAT ``num_workers`` (>= 1); more workers run a portfolio of strategies in parallel
        (:data:`PORTFOLIO`, then large-neighbourhood search); not deterministic.
    scale : float, optional
        Power of two multiplying the scores before rounding them to integers (a power of two keeps the
        scaling exact in float64). Default: 1 for integer scores, else the largest power of two with
        scaled total < 2^40, so no score moves by more than 0.5 / scale <= 2^-40 T. It must keep the
        scaled total <= 2^52.
    hint : bool
        Give CP-SAT the warm start (greedy B, :func:`~rcprune.solvers.matrix.greedy_row_column.greedy_row_column`)
        as a complete hint (x, y, z and the counts). The warm start is computed either way and returned
        if CP-SAT finds nothing better in time.
    export : str or path-like, optional
        A path ending in ``.mps`` or ``.lp``: write the linear model (the core constraints, plus the
        fixed-shape constraints; not CP-SAT's product constraint) with the real-valued scores as the
        objective (maximize the kept sum; cost = T - objective), atomically, then solve as usual.
    shape : (int, int), optional
        Per-shape mode: keep exactly ``shape[0]`` rows and ``shape[1]`` columns (``r*c <= K``). The model
        and the result refer to ``instance.replace(shape=shape)``: ``lower_bound`` and ``"optimal"`` are
        for that shape only. A fixed-shape instance is solved this way automatically.
    progress : bool
        Print CP-SAT's search log.
    cost_bound : float, optional
        A proven lower bound on the cost (of the shape, in per-shape mode), e.g. a Lagrangian bound: added
        as the cut ``sum q z <= scale (T - cost_bound + K eps)``, valid for every solution.
    cutoff : float, optional
        Search only solutions of cost <= ``cutoff`` (an incumbent's): the model gets
        ``sum q z >= scale (T - cutoff - K eps)``. If CP-SAT proves that infeasible, no solution costs
        <= ``cutoff``, and ``lower_bound`` is about ``cutoff`` (``info["cutoff_infeasible"]``); otherwise the
        bound is as without the cutoff (an optimum above the cutoff is then certified only to the cutoff).
        The returned solution is the warm start when CP-SAT finds nothing.

    Returns
    -------
    SolveResult
        ``iterations`` is CP-SAT's branch count; ``trace`` has one entry per improving CP-SAT solution.
        ``info``: ``cpsat_status``, ``objective_scaled``, ``best_bound_scaled``, ``scale``,
        ``score_rounding`` (:math:`\varepsilon`), ``scaling_tolerance`` (:math:`2K\varepsilon`),
        ``warm_start_cost``, ``num_conflicts``, ``workers``, and ``shape``/``export`` when given.
        ``cpsat_status`` is ``"NOT_STARTED"`` if the time limit ran out while building the model; the
        result is then greedy B's.

    Notes
    -----
    The model has :math:`mn + m + n` binaries and :math:`3mn + O(m + n)` constraints; building it is
    O(mn), solving is exponential in the worst case (the problem is NP-hard), so this is for small and
    medium matrices (tens of rows and columns). CP-SAT runs with ``linearization_level=2`` (all
    constraints in its LP relaxation), which proves the library's small instances optimal much sooner
    (``rcprune bench solvers``; docs/report-card.md). In the fixed-shape
    form :math:`\sum x = r`, :math:`\sum y = c`, :math:`\sum_j z_{ij} = c\,x_i`,
    :math:`\sum_i z_{ij} = r\,y_j` hold for every feasible solution and tighten the relaxation.

    >>> import rcprune
    >>> res = cpsat(rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2))
    >>> res.solution, res.cost, res.status, res.lower_bound
    (Solution(rows=[0], cols=[0, 1]), 5.0, 'optimal', 5.0)
    """
    clock = Stopwatch(time_limit)
    workers, scale, export, shape = _check_options(instance, workers, scale, export, shape)
    target = instance.replace(shape=shape) if shape is not None else instance
    q, scale, err = _scaled_scores(target.scores, target.total, scale)
    if export is not None:
        _export(export, target)
    greedy = greedy_row_column(target)
    slack = 2.0 * target.m * target.n * _EPS * target.total  # float64 error of the total and kept sums
    if cost_bound is not None:
        cost_bound = check_real_option(cost_bound, "cost_bound", -math.inf)
    if cutoff is not None:
        cutoff = check_real_option(cutoff, "cutoff", -math.inf)
    kept_range = _objective_range(target, q, scale, err, cost_bound, cutoff, slack)
    built = _cpsat_model(target, q, greedy.solution if hint else None, clock, kept_range)
    if built is None:  # out of time before CP-SAT could start
        facts = {"cpsat_status": "NOT_STARTED", "objective_scaled": None, "best_bound_scaled": None,
                 "num_conflicts": 0}
        outcome = _Outcome(greedy.solution, greedy.lower_bound, 0, [], facts)
    else:
        outcome = _solve(target, built, scale, err, greedy, seed, workers, progress, clock, kept_range[0])
    tolerance = 2.0 * target.budget * err
    info = {
        **outcome.facts,
        "scale": scale,
        "score_rounding": err,
        "scaling_tolerance": tolerance,
        "warm_start_cost": greedy.cost,
        "workers": workers,
    }
    if shape is not None:
        info["shape"] = shape
    if export is not None:
        info["export"] = str(export)
    if cost_bound is not None or cutoff is not None:
        info["cost_bound"], info["cutoff"] = cost_bound, cutoff
        info["cutoff_infeasible"] = info["cpsat_status"] == "INFEASIBLE"
    cost = evaluate(target, outcome.solution).cost
    return make_result(target, outcome.solution, method="cpsat", runtime=clock.elapsed(),
                       iterations=outcome.branches, lower_bound=outcome.lower_bound,
                       timed_out=time_limit is not None and info["cpsat_status"] not in ("OPTIMAL", "INFEASIBLE"),
                       trace=outcome.trace, seed=seed, info=info,
                       proof_tolerance=(tolerance + slack) / max(1.0, cost))
