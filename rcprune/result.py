"""The one result type every solver of every problem kind returns (scipy.optimize's ``OptimizeResult`` style)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SolveResult", "make_result", "certified_status", "Stopwatch"]


@dataclass(frozen=True)
class SolveResult:
    """Outcome of a solve, the same fields for every problem kind.

    Attributes
    ----------
    solution : Solution, NetworkSolution or RetentionSolution
        The instance kind's solution; every solution has ``.mask``.
    cost : float
        The objective, minimized: the pruned cost (matrix), the weighted pruned cost (network) or the
        reconstruction error (retention).
    kept_sum : float
        Kept importance (network: weighted; retention: the sum of kept ``|w|``).
    kept_count : int
        Kept entries (network: effective kept entries, dead channels' columns excluded).
    lower_bound : float or None
        A proven lower bound on the optimal cost, if the method has one.
    status : str
        ``"optimal"`` only when ``lower_bound`` meets ``cost`` (proven); ``"time_limit"`` when the
        time limit stopped the search; otherwise ``"feasible"``.
    runtime : float
        Wall-clock seconds.
    iterations : int
    trace : list of (seconds, iteration, best_cost)
    method : str
    seed : int or None
    feasible : bool
    info : dict
        Method-specific extras (never renames the fields above).
    evaluation : Evaluation, NetworkEvaluation or RetentionEvaluation
        ``rcprune.evaluate(instance, solution)``: the kind's full account of the solution.
    """

    solution: Any
    cost: float
    kept_sum: float
    kept_count: int
    lower_bound: float | None
    status: str
    runtime: float
    iterations: int
    trace: list = field(default_factory=list)
    method: str = ""
    seed: int | None = None
    feasible: bool = True
    info: dict = field(default_factory=dict)
    evaluation: Any = None

    @property
    def gap(self) -> float | None:
        """Relative optimality gap (cost - lower_bound) / cost, or None without a bound."""
        if self.lower_bound is None:
            return None
        if self.cost <= 0:
            return 0.0
        return max(0.0, (self.cost - self.lower_bound) / self.cost)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no masks): the common fields, then the evaluation's own facts."""
        out = {
            "method": self.method, "status": self.status, "cost": self.cost, "kept_sum": self.kept_sum,
            "kept_count": self.kept_count, "lower_bound": self.lower_bound, "gap": self.gap,
            "runtime": self.runtime, "iterations": self.iterations, "seed": self.seed, "feasible": self.feasible,
        }
        if self.evaluation is not None:
            out.update(self.evaluation.summary())
        return out


class Stopwatch:
    """Elapsed time and an optional deadline."""

    def __init__(self, time_limit: float | None = None):
        self.start = time.perf_counter()
        self.time_limit = time_limit

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        if self.time_limit is None:
            return float("inf")
        return self.time_limit - self.elapsed()

    def expired(self) -> bool:
        return self.remaining() <= 0


def certified_status(cost: float, feasible: bool, lower_bound: float | None, *, timed_out: bool,
                     proof_tolerance: float, method: str) -> tuple[float | None, str]:
    """``(lower_bound, status)`` of a solve: ``optimal`` only when the bound meets the cost of a feasible
    solution (``cost - lower_bound <= proof_tolerance * max(1, |cost|)``).

    A bound above a feasible cost is a solver bug and raises; a valid bound is clipped to the cost.
    """
    tol = proof_tolerance * max(1.0, abs(cost))
    if lower_bound is not None:
        if feasible and lower_bound > cost + tol:
            raise RuntimeError(f"{method}: lower bound {lower_bound} exceeds the cost {cost} of a feasible solution")
        lower_bound = float(min(lower_bound, cost)) if feasible else float(lower_bound)
    proven = feasible and lower_bound is not None and cost - lower_bound <= tol
    return lower_bound, "optimal" if proven else ("time_limit" if timed_out else "feasible")


def make_result(instance, solution, *, method: str, runtime: float, iterations: int = 0,
                lower_bound: float | None = None, timed_out: bool = False, trace: list | None = None,
                seed: int | None = None, info: dict | None = None, proof_tolerance: float = 1e-9) -> SolveResult:
    """Evaluate ``solution`` on ``instance`` (any kind) and wrap it; ``optimal`` only if the bound proves it."""
    ev = instance.evaluate(solution)
    lower_bound, status = certified_status(ev.cost, ev.feasible, lower_bound, timed_out=timed_out,
                                           proof_tolerance=proof_tolerance, method=method)
    return SolveResult(
        solution=solution, cost=ev.cost, kept_sum=ev.kept_sum, kept_count=ev.kept_count,
        lower_bound=lower_bound, status=status, runtime=runtime, iterations=iterations,
        trace=list(trace or []), method=method, seed=seed, feasible=ev.feasible, info=dict(info or {}),
        evaluation=ev,
    )
