"""Exact solves of one fixed shape (r, c), for the shape-wise bound (:mod:`rcprune.bounds.shapewise`).

The bound is a pure function of the instance and the per-shape solves it is given; this module gives it
the ones rcprune has: enumeration of the shorter side, CP-SAT with the shape's bound as a cut and the
incumbent as a cutoff, and the greedy incumbent. Only proven bounds raise a shape's bound (the CP-SAT
incumbent never does).
"""
from __future__ import annotations

from rcprune.matrix.model import Instance
from rcprune.solvers.matrix.cpsat import cpsat
from rcprune.solvers.matrix.enumeration import exact_enumeration
from rcprune.solvers.matrix.greedy_row_column import greedy_column_row, greedy_row_column

__all__ = ["ExactShapes"]


class ExactShapes:
    """The exact per-shape solves of rcprune's solvers.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 1, 0], [1, 1, 0], [0, 0, 3]], budget=2)
    >>> ExactShapes.incumbent(inst), ExactShapes.enumerate(inst, 1, 2, None)
    (5.0, (5.0, 5.0))
    """

    @staticmethod
    def incumbent(instance: Instance) -> float:
        """The better cost of greedy B and its mirror (a 2-approximation)."""
        return min(greedy_row_column(instance).cost, greedy_column_row(instance).cost)

    @staticmethod
    def enumerate(instance: Instance, r: int, c: int, time_limit: float | None) -> tuple[float, float]:
        """(lower bound, feasible cost) of the fixed shape (r, c), by enumeration of the shorter side."""
        res = exact_enumeration(instance.replace(shape=(r, c)), time_limit=time_limit)
        return (res.lower_bound if res.lower_bound is not None else 0.0), res.cost

    @staticmethod
    def cpsat(instance: Instance, r: int, c: int, low: float, incumbent: float, seed: int,
              time_limit: float | None) -> tuple[float, float, str]:
        """(lower bound, feasible cost, CP-SAT status) of the shape (r, c): CP-SAT with the cut
        kept <= total - ``low`` and the cutoff cost <= ``incumbent``."""
        res = cpsat(instance, shape=(r, c), seed=seed, time_limit=time_limit, cost_bound=max(low, 0.0),
                    cutoff=incumbent)
        return (res.lower_bound if res.lower_bound is not None else 0.0), res.cost, res.info["cpsat_status"]
