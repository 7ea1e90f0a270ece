"""Data-aware RC pruning: keep rows R and columns C of a layer (|R| |C| <= K) and minimize the layer's output
error after the least-squares refit of the kept submatrix on calibration data (H = X X^T / N).

With every kept row refit on the shared columns C, a pruned row loses its energy e_i = w_i^T H w_i and a
kept row keeps the error w_i^T (H - H_:C H_CC^-1 H_C:) w_i, so the cost of (R, C) is
sum_i e_i - sum_{i in R} b_i(C) with the benefit b_i(C) = w_i^T H_:C H_CC^-1 H_C: w_i >= 0: for a given C
the best R is the ⌊K / |C|⌋ rows of largest benefit.

>>> import numpy as np
>>> from rcprune.matrix.solution import Solution
>>> H = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
>>> inst = CompensatedInstance([[1.0, 0.8, 0.7], [0.1, 0.1, 0.1]], H, budget=2, damping=0)
>>> ev = inst.evaluate(Solution([True, False], [True, False, True]))
>>> round(ev.cost, 4), ev.weights[0].round(3).tolist()      # row 0 refit on columns 0 and 2
(0.1696, [1.72, 0.0, 0.7])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcprune.compensation import DEFAULT_DAMPING, compensated_refit, quadratic_forms
from rcprune.matrix.solution import Evaluation, Solution, check_solution, is_feasible
from rcprune.validation import check_budget, check_hessian, check_matrix, check_name, check_nonnegative

__all__ = ["CompensatedInstance", "CompensatedEvaluation"]


class CompensatedInstance:
    """An immutable data-aware RC instance (kind ``"matrix"``, objective ``"compensated"``).

    Parameters
    ----------
    weights : array_like, shape (m, n)
        The layer (conv: ``weight.view(C_out, -1)``).
    hessian : array_like, shape (n, n)
        H = X X^T / N of the layer's inputs; positive definite after damping.
    budget, density, sparsity, shape :
        The kept-entry budget K, as for :class:`rcprune.Instance`.
    damping : float, optional
        H + damping * mean(diag H) * I; default 0.01.
    name : str
    """

    __slots__ = ("weights", "hessian", "budget", "fixed_shape", "damping", "name", "m", "n", "energies")

    kind = "matrix"
    objective = "compensated"

    def __init__(self, weights, hessian, budget=None, *, density=None, sparsity=None, shape=None,
                 damping: float | None = None, name: str = "layer"):
        w = check_matrix(weights, "weights")
        m, n = w.shape
        damping = DEFAULT_DAMPING if damping is None else check_nonnegative(damping, "damping")
        h = check_hessian(hessian, n, damping, definite=True)
        k, fixed = check_budget(m, n, budget, density=density, sparsity=sparsity, shape=shape)
        energies = quadratic_forms(w, h)
        for a in (w, h, energies):
            a.setflags(write=False)
        for key, value in (("weights", w), ("hessian", h), ("budget", k), ("fixed_shape", fixed),
                           ("damping", damping), ("name", check_name(name)), ("m", m), ("n", n),
                           ("energies", energies)):
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError("CompensatedInstance is immutable")

    def __repr__(self) -> str:
        return (f"CompensatedInstance(name={self.name!r}, shape=({self.m}, {self.n}), budget={self.budget}, "
                f"damping={self.damping})")

    @property
    def shape(self) -> tuple[int, int]:
        return self.m, self.n

    def rows_for(self, n_cols: int) -> int:
        """How many rows a column count leaves room for (the fixed shape's rows, or ⌊K / n_cols⌋ <= m)."""
        if self.fixed_shape is not None:
            return self.fixed_shape[0] if n_cols == self.fixed_shape[1] else 0
        return min(self.m, self.budget // n_cols) if n_cols else self.m

    def evaluate(self, solution: Solution) -> "CompensatedEvaluation":
        """Cost after the refit, the refit weights and the kept counts of ``solution``. O(m n^2 + |C|^3)."""
        check_solution(self, solution)
        mask = solution.rows[:, None] & solution.cols[None, :]
        refit, errors = compensated_refit(self.weights, self.hessian, mask)
        r, c = int(solution.rows.sum()), int(solution.cols.sum())
        return CompensatedEvaluation(
            cost=float(errors.sum()), kept_sum=float(np.abs(self.weights)[mask].sum()), kept_count=r * c,
            density=r * c / (self.m * self.n), feasible=is_feasible(self, r, c), n_rows=r, n_cols=c,
            row_errors=errors, weights=refit)


@dataclass(frozen=True)
class CompensatedEvaluation(Evaluation):
    """What (R, C) achieves: ``cost`` is the error after the refit, ``weights`` the refit layer (zero outside
    R x C), ``row_errors`` each row's error."""

    row_errors: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
