"""A solution of RC pruning: row and column keep-masks (kept entries: rows x cols), shared by every
objective of the matrix kind, what it achieves (:class:`Evaluation`) and its checks against an instance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcprune.validation import InvalidInstanceError, as_array, check_mask

__all__ = ["Solution", "Evaluation", "check_solution", "is_feasible"]


class Solution:
    """Row and column keep-masks. Kept entries are ``rows x cols``.

    >>> Solution.from_indices(3, 2, rows=[0, 2], cols=[1])
    Solution(rows=[0, 2], cols=[1])
    """

    __slots__ = ("_rows", "_cols")

    def __init__(self, rows, cols):
        r = as_array(rows, "row mask")
        c = as_array(cols, "column mask")
        object.__setattr__(self, "_rows", check_mask(r, r.shape[0] if r.ndim == 1 else -1, "row mask"))
        object.__setattr__(self, "_cols", check_mask(c, c.shape[0] if c.ndim == 1 else -1, "column mask"))

    def __setattr__(self, key, value):
        raise AttributeError("Solution is immutable")

    @classmethod
    def from_indices(cls, m: int, n: int, rows, cols) -> "Solution":
        rmask = np.zeros(m, dtype=bool)
        cmask = np.zeros(n, dtype=bool)
        ridx, cidx = as_array(rows, "row indices", np.int64), as_array(cols, "column indices", np.int64)
        if ridx.size and (ridx.min() < 0 or ridx.max() >= m):
            raise InvalidInstanceError(f"row indices must be in [0, {m}), got {ridx.tolist()}")
        if cidx.size and (cidx.min() < 0 or cidx.max() >= n):
            raise InvalidInstanceError(f"column indices must be in [0, {n}), got {cidx.tolist()}")
        rmask[ridx] = True
        cmask[cidx] = True
        return cls(rmask, cmask)

    @property
    def rows(self) -> np.ndarray:
        """Boolean mask of kept rows (read-only)."""
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        """Boolean mask of kept columns (read-only)."""
        return self._cols

    @property
    def kept_rows(self) -> np.ndarray:
        return np.flatnonzero(self._rows)

    @property
    def kept_cols(self) -> np.ndarray:
        return np.flatnonzero(self._cols)

    @property
    def shape(self) -> tuple[int, int]:
        """(number of kept rows, number of kept columns)."""
        return int(self._rows.sum()), int(self._cols.sum())

    @property
    def mask(self) -> np.ndarray:
        """The (m, n) boolean entry mask ``rows x cols`` (read-only)."""
        mask = np.outer(self._rows, self._cols)
        mask.setflags(write=False)
        return mask

    def __eq__(self, other) -> bool:
        if not isinstance(other, Solution):
            return NotImplemented
        return np.array_equal(self._rows, other._rows) and np.array_equal(self._cols, other._cols)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Solution(rows={self.kept_rows.tolist()}, cols={self.kept_cols.tolist()})"


@dataclass(frozen=True)
class Evaluation:
    """What a solution achieves on an instance."""

    cost: float
    kept_sum: float
    kept_count: int
    density: float
    feasible: bool
    n_rows: int
    n_cols: int

    def summary(self) -> dict:
        """The facts a result summary shows beside the common fields."""
        return {"kept_rows": self.n_rows, "kept_cols": self.n_cols, "density": self.density}


def check_solution(instance, solution: Solution) -> None:
    """Raise if the solution's masks do not match the instance's matrix."""
    if not isinstance(solution, Solution):
        raise InvalidInstanceError(f"expected a rcprune.Solution, got {type(solution).__name__}")
    if solution.rows.shape[0] != instance.m:
        raise InvalidInstanceError(
            f"row mask has length {solution.rows.shape[0]} but the instance has {instance.m} rows")
    if solution.cols.shape[0] != instance.n:
        raise InvalidInstanceError(
            f"column mask has length {solution.cols.shape[0]} but the instance has {instance.n} columns")


def is_feasible(instance, n_rows: int, n_cols: int) -> bool:
    if instance.fixed_shape is not None:
        return (n_rows, n_cols) == instance.fixed_shape
    return n_rows * n_cols <= instance.budget
