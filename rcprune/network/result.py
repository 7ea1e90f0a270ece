"""The result type of the network solvers: :class:`rcprune.SolveResult`'s fields, for a network.

``solution`` is a :class:`rcprune.NetworkSolution`; ``cost`` the weighted pruned cost;
``kept_sum = sum_l w_l kept_l`` (so ``cost + kept_sum`` is the weighted total); ``kept_count`` the
effective kept entries; ``info["layers"]`` the per-layer table. The added field ``evaluation`` holds the
full :class:`rcprune.network.model.NetworkEvaluation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcprune.network.model import NetworkEvaluation, NetworkInstance, NetworkSolution, evaluate_network
from rcprune.result import SolveResult, certified_status

__all__ = ["NetworkSolveResult", "make_network_result", "layer_table"]


@dataclass(frozen=True)
class NetworkSolveResult(SolveResult):
    """A :class:`rcprune.SolveResult` whose solution is a :class:`rcprune.NetworkSolution`."""

    evaluation: NetworkEvaluation | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no masks)."""
        ev = self.evaluation
        return {
            "method": self.method, "status": self.status, "cost": self.cost, "kept_sum": self.kept_sum,
            "kept_count": self.kept_count, "density": ev.density if ev else None,
            "dead_channels": sum(len(v) for v in ev.dead_channels.values()) if ev else None,
            "lower_bound": self.lower_bound, "gap": self.gap, "runtime": self.runtime,
            "iterations": self.iterations, "seed": self.seed, "feasible": self.feasible,
        }


def layer_table(evaluation: NetworkEvaluation) -> list[dict[str, Any]]:
    """Per-layer rows: kept rows and effective columns, kept entries, density, costs."""
    return [{"layer": le.name, "kept_rows": le.n_rows, "kept_cols": le.n_cols, "forced_cols": le.forced_cols,
             "kept_count": le.kept_count, "size": le.size, "density": le.density, "cost": le.cost,
             "weighted_cost": le.weighted_cost} for le in evaluation.layers]


def make_network_result(instance: NetworkInstance, solution: NetworkSolution, *, method: str, runtime: float,
                        iterations: int = 0, lower_bound: float | None = None, timed_out: bool = False,
                        trace: list | None = None, seed: int | None = None, info: dict | None = None,
                        proof_tolerance: float = 1e-9) -> NetworkSolveResult:
    """Evaluate ``solution`` and wrap it; status is ``optimal`` only if the bound proves it."""
    ev = evaluate_network(instance, solution)
    lower_bound, status = certified_status(ev.cost, ev.feasible, lower_bound, timed_out=timed_out,
                                           proof_tolerance=proof_tolerance, method=method)
    info = dict(info or {})
    info.setdefault("layers", layer_table(ev))
    return NetworkSolveResult(
        solution=solution, cost=ev.cost, kept_sum=instance.weighted_total - ev.cost, kept_count=ev.kept_count,
        lower_bound=lower_bound, status=status, runtime=runtime, iterations=iterations, trace=list(trace or []),
        method=method, seed=seed, feasible=ev.feasible, info=info, evaluation=ev)
