"""Per-shape bound tables shared by the bound techniques, and the result type they all return.

Every lower bound of :mod:`rcprune.bounds` has the same skeleton. With non-negative scores an optimal
solution can be grown to a maximal feasible shape (r, min(n, K // r)) without losing kept importance, so

    OPT = total - max over maximal shapes (r, c) of  U*(r, c),   U*(r, c) = max_{|R| = r, |C| = c} sum_{R x C} s,

and any upper bounds ``kept_upper[k] >= U*(r_k, c_k)`` give ``OPT >= total - max_k kept_upper[k]``. A
technique supplies ``kept_upper`` for the shapes; tables of several techniques combine by the entry-wise
minimum (each entry stays an upper bound), which is never weaker than the best technique alone.

Floating point: sums of n floats are exact up to n * eps relative, so every cost bound is lowered by
``safety_margin(instance)`` = 8 eps (m + n) total; a certified optimum is then shown within that margin.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.matrix.model import maximal_shapes

__all__ = ["BoundResult", "ShapeTable", "shape_table", "safety_margin"]


def safety_margin(instance: Instance) -> float:
    """Slack subtracted from every cost bound to absorb floating-point rounding of the sums."""
    return 8.0 * np.finfo(np.float64).eps * (instance.m + instance.n) * instance.total


@dataclass(frozen=True)
class ShapeTable:
    """Upper bounds on the kept sum, one per maximal shape.

    Attributes
    ----------
    rows, cols : ndarray of int64
        The maximal shapes (``maximal_shapes(instance)``).
    kept_upper : ndarray of float64
        ``kept_upper[k] >= max kept sum with exactly rows[k] rows and cols[k] columns``.
    """

    rows: np.ndarray
    cols: np.ndarray
    kept_upper: np.ndarray

    def cost_lower(self, instance: Instance) -> np.ndarray:
        """Per-shape lower bounds on the cost of any solution of that shape (margin included)."""
        return np.maximum(instance.total - self.kept_upper - safety_margin(instance), 0.0)

    def bound(self, instance: Instance) -> float:
        """``min over shapes`` of :meth:`cost_lower`: a lower bound on OPT."""
        return float(self.cost_lower(instance).min())

    def worst_shape(self) -> tuple[int, int]:
        """The shape with the largest kept upper bound (the one that limits the bound)."""
        k = int(np.argmax(self.kept_upper))
        return int(self.rows[k]), int(self.cols[k])

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, cols)`` of the shapes."""
        return self.rows, self.cols

    def combine(self, other: "ShapeTable") -> "ShapeTable":
        """Entry-wise minimum of two tables over the same shapes."""
        if not (np.array_equal(self.rows, other.rows) and np.array_equal(self.cols, other.cols)):
            raise ValueError("shape tables over different shapes cannot be combined")
        return ShapeTable(self.rows, self.cols, np.minimum(self.kept_upper, other.kept_upper))

    def per_shape(self, instance: Instance) -> list[tuple[int, int, float]]:
        """``[(r, c, cost lower bound), ...]``, JSON-friendly."""
        lows = self.cost_lower(instance)
        return [(int(r), int(c), float(v)) for r, c, v in zip(self.rows, self.cols, lows)]


def shape_table(instance: Instance, kept_upper) -> ShapeTable:
    """Wrap per-shape kept-sum upper bounds (ordered as ``maximal_shapes(instance)``)."""
    rows, cols = maximal_shapes(instance)
    return ShapeTable(rows, cols, np.asarray(kept_upper, dtype=np.float64))


@dataclass(frozen=True)
class BoundResult:
    """A proven lower bound on the optimal pruned cost, and how it was proven.

    Attributes
    ----------
    bound : float
        ``bound <= OPT`` (the minimum pruned cost over all feasible solutions).
    method : str
    proof : str
        One paragraph: the argument that makes ``bound`` valid, with the numbers it used.
    per_shape : list of (r, c, cost lower bound) or None
        For shape-based techniques: a bound on the cost of every solution of each maximal shape.
    runtime : float
        Seconds.
    iterations : int
    trace : list of (seconds, iteration, bound)
        Improvements of the bound over time (iterative methods).
    info : dict
        Method-specific extras.
    """

    bound: float
    method: str
    proof: str
    per_shape: list | None = None
    runtime: float = 0.0
    iterations: int = 0
    trace: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def gap(self, cost: float) -> float:
        """Relative gap ``(cost - bound) / cost`` certified for a solution of cost ``cost``."""
        if cost <= 0:
            return 0.0
        return max(0.0, (cost - self.bound) / cost)
