"""The single-matrix row-and-column (RC) pruning problem.

Keep a row set R and a column set C of a non-negative score matrix S with |R|*|C| <= K (or, in the
fixed-shape form, exactly |R| = r and |C| = c); minimize the pruned cost, the sum of S outside R x C.
Definitions and notation: ``proofs/problem.md``.

>>> import numpy as np, rcprune
>>> inst = rcprune.Instance([[3, 1], [1, 0]], budget=2)
>>> sol = rcprune.Solution([True, False], [True, True])
>>> rcprune.evaluate(inst, sol)
Evaluation(cost=1.0, kept_sum=4.0, kept_count=2, density=0.5, feasible=True, n_rows=1, n_cols=2)
"""
from __future__ import annotations

from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from rcprune.matrix import kernels
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Evaluation, Solution, check_solution, is_feasible
from rcprune.validation import (InvalidInstanceError, check_budget, check_matrix, check_metadata,
                                check_name, check_scores)

__all__ = ["Instance", "Solution", "Evaluation", "evaluate", "maximal_shapes"]


class Instance:
    """An immutable RC pruning instance: scores, a kept-entry budget, a name and metadata.

    Parameters
    ----------
    scores : array_like, shape (m, n)
        Non-negative importance of each entry (float64 internally).
    budget : int, optional
        Maximum number of kept entries K.
    density, sparsity : float, optional
        Alternatives to ``budget``: K = floor(density * m * n), density = 1 - sparsity.
    shape : (int, int), optional
        Fixed-shape form: keep exactly ``shape[0]`` rows and ``shape[1]`` columns.
    name : str
    metadata : mapping, optional
        JSON-serializable facts about the instance (source, generator, seed, best known cost, ...).
    """

    __slots__ = ("_scores", "_budget", "_shape", "_name", "_metadata", "__dict__")

    kind = "matrix"
    objective = "scores"

    def __init__(self, scores, budget=None, *, density=None, sparsity=None, shape=None,
                 name: str = "instance", metadata: Mapping[str, Any] | None = None):
        s = check_scores(scores)
        k, fixed = check_budget(s.shape[0], s.shape[1], budget, density=density, sparsity=sparsity, shape=shape)
        name = check_name(name)
        meta = check_metadata(metadata)
        object.__setattr__(self, "_scores", s)
        object.__setattr__(self, "_budget", k)
        object.__setattr__(self, "_shape", fixed)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_metadata", MappingProxyType(meta))

    def __setattr__(self, key, value):
        raise AttributeError("Instance is immutable; use Instance.replace(...) to derive a new one")

    @classmethod
    def from_layer(cls, weights, hessian=None, budget=None, *, density=None, sparsity=None, shape=None,
                   damping: float | None = None, name: str = "layer"):
        """The RC instance of a layer's weights: data-free (scores |W|, an :class:`Instance`) or, given the
        calibration Gram ``hessian`` (H = X X^T / N), data-aware: a
        :class:`rcprune.matrix.compensated.CompensatedInstance` whose cost is the error after the
        least-squares refit of the kept submatrix.

        >>> Instance.from_layer([[1.0, -2.0]], budget=1).scores.tolist()
        [[1.0, 2.0]]
        """
        if hessian is None:
            if damping is not None:
                raise InvalidInstanceError("damping applies to a hessian; none was given")
            return cls(np.abs(check_matrix(weights, "weights")), budget, density=density, sparsity=sparsity,
                       shape=shape, name=name)
        return CompensatedInstance(weights, hessian, budget, density=density, sparsity=sparsity, shape=shape,
                                   damping=damping, name=name)

    @property
    def scores(self) -> np.ndarray:
        """Read-only float64 score matrix (m, n)."""
        return self._scores

    @property
    def budget(self) -> int:
        """Maximum number of kept entries K (r*c in the fixed-shape form)."""
        return self._budget

    @property
    def fixed_shape(self) -> tuple[int, int] | None:
        """``(r, c)`` in the fixed-shape form, else ``None``."""
        return self._shape

    @property
    def name(self) -> str:
        return self._name

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self._metadata

    @property
    def m(self) -> int:
        return self._scores.shape[0]

    @property
    def n(self) -> int:
        return self._scores.shape[1]

    @property
    def density(self) -> float:
        """Budget as a fraction of all entries."""
        return self._budget / (self.m * self.n)

    @cached_property
    def scores_t(self) -> np.ndarray:
        """C-contiguous transpose of the scores, for fast column access in kernels."""
        t = np.ascontiguousarray(self._scores.T)
        t.setflags(write=False)
        return t

    @cached_property
    def scores_float32(self) -> tuple[np.ndarray, np.ndarray] | None:
        """C-contiguous float32 copies of the scores and of their transpose, or None when a non-zero score
        lies outside float32's normal range (it would overflow, or lose its relative precision).

        The annealing chain reads these: its accepted swaps stream two score columns or rows from memory,
        and float32 halves those bytes. Rounding to float32 moves a score
        by at most 2**-24 of itself (nothing for ``|w|`` of float32 weights); reported costs are always
        evaluated on the float64 scores.
        """
        tiny, big = np.finfo(np.float32).tiny, np.finfo(np.float32).max
        nonzero = self._scores[self._scores > 0]
        if nonzero.size and (nonzero.min() < tiny or nonzero.max() > big):
            return None
        pair = (np.ascontiguousarray(self._scores, dtype=np.float32),
                np.ascontiguousarray(self.scores_t, dtype=np.float32))
        for a in pair:
            a.setflags(write=False)
        return pair

    @cached_property
    def total(self) -> float:
        """Sum of all scores: the cost of keeping nothing."""
        return float(self._scores.sum())

    @cached_property
    def row_sums(self) -> np.ndarray:
        return self._scores.sum(axis=1)

    @cached_property
    def col_sums(self) -> np.ndarray:
        return self._scores.sum(axis=0)

    def evaluate(self, solution: "Solution") -> "Evaluation":
        """What ``solution`` achieves here (see :func:`evaluate`)."""
        return evaluate(self, solution)

    def replace(self, **changes) -> "Instance":
        """A new instance with some fields changed (budget keywords replace the budget)."""
        kw: dict[str, Any] = {"name": self._name, "metadata": dict(self._metadata)}
        budget_keys = {"budget", "density", "sparsity", "shape"}
        if not budget_keys & changes.keys():
            kw.update(shape=self._shape) if self._shape is not None else kw.update(budget=self._budget)
        kw.update(changes)
        scores = kw.pop("scores", self._scores)
        return Instance(scores, **kw)

    def __repr__(self) -> str:
        form = f"shape={self._shape}" if self._shape else f"budget={self._budget}"
        return f"Instance(name={self._name!r}, {self.m} x {self.n}, {form}, density={self.density:.4g})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Instance):
            return NotImplemented
        return (self._budget == other._budget and self._shape == other._shape and self._name == other._name
                and dict(self._metadata) == dict(other._metadata) and np.array_equal(self._scores, other._scores))

    __hash__ = None  # type: ignore[assignment]


def maximal_shapes(instance: Instance, transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The maximal feasible shapes as two int64 arrays ``(lead, other)``, ``lead`` increasing.

    Untransposed, ``lead`` counts rows and ``other = min(n, K // lead)`` columns (the shapes an optimum can be grown to); with ``transpose=True`` the roles swap: ``lead`` counts columns
    (1..min(n, K)) and ``other = min(m, K // lead)`` rows. A fixed-shape instance has its one shape.

    >>> maximal_shapes(Instance([[1, 2, 3]], budget=2), transpose=True)
    (array([1, 2]), array([1, 1]))
    """
    m, n = (instance.n, instance.m) if transpose else (instance.m, instance.n)
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape[::-1] if transpose else instance.fixed_shape
        return np.array([r], dtype=np.int64), np.array([c], dtype=np.int64)
    lead = np.arange(1, min(m, instance.budget) + 1, dtype=np.int64)
    return lead, np.minimum(n, instance.budget // lead)


def check_start(instance: Instance, start) -> None:
    """Check a local-search start option: ``"greedy"``, ``"random"`` or a feasible :class:`Solution`."""
    if isinstance(start, Solution):
        check_solution(instance, start)
        if not is_feasible(instance, *start.shape):
            raise InvalidInstanceError(f"start solution of shape {start.shape} is infeasible for {instance!r}")
    elif not isinstance(start, str) or start not in ("greedy", "random"):
        raise InvalidInstanceError(f"start must be 'greedy', 'random' or a rcprune.Solution, got {start!r}")


def evaluate(instance: Instance, solution: Solution) -> Evaluation:
    """Pruned cost, kept sum, kept count, density and feasibility of ``solution`` on ``instance``."""
    check_solution(instance, solution)
    kept = kernels.kept_sum(instance.scores, solution.rows, solution.cols)
    r, c = solution.shape
    return Evaluation(
        cost=max(instance.total - kept, 0.0),
        kept_sum=kept,
        kept_count=r * c,
        density=r * c / (instance.m * instance.n),
        feasible=is_feasible(instance, r, c),
        n_rows=r,
        n_cols=c,
    )
