"""Small-weight retention: which weights of a layer to keep so that its output changes least.

Keep exactly k weights per row of W (or k in the whole layer) and minimize the layer's output error on
calibration data, H = X X^T / N the second moment of the layer inputs. Two objectives:

* ``"compensated"`` (default): the error after the optimal least-squares refit of the kept weights
  (Optimal Brain Surgeon), E(M) = sum_i min_{v_i = 0 off M_i} (w_i - v_i)^T H (w_i - v_i); what the pruned
  layer gives once its kept weights are refit (:mod:`rcprune.retention.compensated`).
* ``"masked"``: the error of the masked weights as they are, E(M) = sum_i d_i^T H d_i with
  d_i = (1 - M_i) * W_i the pruned part of row i.

With H = I the masked optimum is magnitude pruning; with correlated inputs the optimum of either may keep
small weights.

>>> import numpy as np, rcprune
>>> H = [[1.0, -0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]   # inputs 0 and 1 anti-correlated
>>> inst = rcprune.RetentionInstance([[1.0, 0.8, 0.7]], H, k=1, objective="masked")
>>> round(rcprune.evaluate(inst, rcprune.RetentionSolution([[True, False, False]])).cost, 6)  # magnitude keeps w = 1.0
1.13
>>> ev = rcprune.evaluate(inst, rcprune.RetentionSolution([[False, False, True]]))              # keeps the smallest
>>> round(ev.cost, 6), ev.retained_small
(0.2, 1)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from rcprune.retention import kernels as rk
from rcprune.compensation import DEFAULT_DAMPING as COMPENSATED_DAMPING, compensated_refit
from rcprune.validation import (InvalidInstanceError, as_array, check_count, check_hessian, check_matrix, check_name,
                                check_nonnegative, damped, kept_from_fraction)

__all__ = [
    "RetentionInstance", "RetentionSolution", "RetentionEvaluation", "evaluate_retention", "hessian_from_inputs",
    "refit", "refit_error", "magnitude_mask", "SCOPES", "OBJECTIVES", "OBJECTIVE_DAMPING",
]

SCOPES = ("row", "layer")
OBJECTIVES = ("compensated", "masked")
# lambda of H + lambda * mean(diag H) * I when none is given: OBC's and SparseGPT's 1% for the compensated
# objective (it inverts H_SS, which damping keeps positive definite); none for the masked one (no inverse)
OBJECTIVE_DAMPING = {"compensated": COMPENSATED_DAMPING, "masked": 0.0}


class RetentionInstance:
    """An immutable small-weight retention instance.

    Parameters
    ----------
    weights : array_like, shape (m, n)
        Layer weights W (a conv layer in im2col view: m output channels, n = C_in * kh * kw).
    hessian : array_like, shape (n, n)
        H = X X^T / N of the calibration inputs (symmetric, positive semi-definite after damping).
    k : int, optional
        Kept weights per row (``scope="row"``, 0 <= k <= n) or in total (``scope="layer"``, 0 <= k <= m n).
    budget : int, optional
        The same as ``k`` (the name every instance kind uses for its kept count).
    density, sparsity : float, optional
        Alternatives to ``k``: density in (0, 1], sparsity in [0, 1) (density = 1 - sparsity);
        k = floor(density * n) per row, or floor(density * m n) in the layer (the rule of every kind:
        :func:`rcprune.validation.kept_from_fraction`).
    scope : {"row", "layer"}
        Per-row budget (every row keeps exactly k) or a layer budget (k in total).
    objective : {"compensated", "masked"}
        The error after the least-squares refit of the kept weights (default; needs H positive definite
        after damping) or the error of the masked weights as they are.
    damping : float, optional
        lambda >= 0: the instance uses H + lambda * mean(diag H) * I. Default :data:`OBJECTIVE_DAMPING`:
        0.01 for the compensated objective (OBC's and SparseGPT's choice), 0 for the masked one.
    name : str
    """

    __slots__ = ("weights", "hessian", "k", "scope", "objective", "damping", "name", "m", "n", "_threshold",
                 "_magnitude_cost")

    kind = "retention"

    def __init__(self, weights, hessian, k: int | None = None, *, budget: int | None = None,
                 density: float | None = None, sparsity: float | None = None, scope: str = "row",
                 objective: str = "compensated", damping: float | None = None, name: str = "retention"):
        w = check_matrix(weights, "weights")
        m, n = w.shape
        if objective not in OBJECTIVES:
            raise InvalidInstanceError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        damping = OBJECTIVE_DAMPING[objective] if damping is None else check_nonnegative(damping, "damping")
        h = check_hessian(hessian, n, damping, definite=objective == "compensated")
        if scope not in SCOPES:
            raise InvalidInstanceError(f"scope must be one of {SCOPES}, got {scope!r}")
        size = n if scope == "row" else m * n
        given = [key for key, v in (("k", k), ("budget", budget), ("density", density), ("sparsity", sparsity))
                 if v is not None]
        if len(given) != 1:
            raise InvalidInstanceError("give exactly one of k (= budget), budget, density or sparsity; got "
                                       + (", ".join(given) if given else "none"))
        if budget is not None:
            k = budget
        if sparsity is not None or density is not None:
            k = kept_from_fraction(size, density=density, sparsity=sparsity)
        k = check_count(k, "k (kept weights per row)" if scope == "row" else "k (kept weights in the layer)", size)
        w.setflags(write=False)
        h.setflags(write=False)
        for key, value in (("weights", w), ("hessian", h), ("k", k), ("scope", scope), ("objective", objective),
                           ("damping", damping),
                           ("name", check_name(name)), ("m", m), ("n", n)):
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_threshold", None)
        object.__setattr__(self, "_magnitude_cost", None)

    def __setattr__(self, key, value):
        raise AttributeError("RetentionInstance is immutable")

    def __repr__(self) -> str:
        return (f"RetentionInstance(name={self.name!r}, shape=({self.m}, {self.n}), k={self.k}, "
                f"scope={self.scope!r}, objective={self.objective!r}, damping={self.damping})")

    @property
    def shape(self) -> tuple[int, int]:
        return self.m, self.n

    @property
    def budget(self) -> int:
        """Kept weights per row (row scope) or in the layer (layer scope): ``k``."""
        return self.k

    @property
    def total_kept(self) -> int:
        """Number of kept weights of every feasible mask."""
        return self.k * self.m if self.scope == "row" else self.k

    @property
    def magnitude_cost(self) -> float:
        """E of the magnitude mask (top-k |w|): the error magnitude pruning gives under the same budget."""
        if self._magnitude_cost is None:
            cost = float(self.row_costs(magnitude_mask(self))[0].sum())
            object.__setattr__(self, "_magnitude_cost", cost)
        return self._magnitude_cost

    def row_costs(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(per-row E, refit weights)`` of a keep-mask under the objective (refit: None if masked)."""
        if self.objective == "masked":
            return rk.row_errors(self.weights, self.hessian, mask), None
        refit_weights, errors = compensated_refit(self.weights, self.hessian, mask)
        return errors, refit_weights

    def evaluate(self, solution) -> "RetentionEvaluation":
        """What ``solution`` achieves here (see :func:`evaluate_retention`)."""
        return evaluate_retention(self, solution)

    @property
    def magnitude_threshold(self) -> np.ndarray:
        """Per-row |w| of the k-th largest weight (row scope) or the layer's K-th largest (layer scope),
        broadcast to shape (m,); +inf when nothing is kept. A kept weight below it is "retained small"."""
        if self._threshold is None:
            a = np.abs(self.weights)
            if self.k == 0:
                t = np.full(self.m, np.inf)
            elif self.scope == "row":
                t = -np.sort(-a, axis=1)[:, self.k - 1]
            else:
                t = np.full(self.m, -np.sort(-a, axis=None)[self.k - 1])
            t.setflags(write=False)
            object.__setattr__(self, "_threshold", t)
        return self._threshold


def magnitude_mask(instance: RetentionInstance, scores: np.ndarray | None = None) -> np.ndarray:
    """Keep the top-k entries of ``scores`` (default |W|) per row or in the layer; ties by index."""
    s = np.abs(instance.weights) if scores is None else scores
    m, n = instance.shape
    keep = np.zeros((m, n), dtype=bool)
    if instance.scope == "row":
        order = np.argsort(-s, axis=1, kind="stable")[:, :instance.k]
        np.put_along_axis(keep, order, True, axis=1)
    else:
        keep.ravel()[np.argsort(-s, axis=None, kind="stable")[:instance.k]] = True
    return keep


class RetentionSolution:
    """A boolean keep-mask of shape (m, n) (True = kept), read-only."""

    __slots__ = ("mask",)

    def __init__(self, mask):
        arr = as_array(mask, "mask")
        if arr.dtype != bool:
            if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
                arr = arr.astype(bool)
            else:
                raise InvalidInstanceError(f"mask must be boolean (or 0/1 integers), got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise InvalidInstanceError(f"mask must be a 2-D matrix, got shape {arr.shape}")
        arr = np.array(arr, dtype=bool, order="C", copy=True)
        arr.setflags(write=False)
        object.__setattr__(self, "mask", arr)

    def __setattr__(self, key, value):
        raise AttributeError("RetentionSolution is immutable")

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    def __repr__(self) -> str:
        return f"RetentionSolution(shape={self.mask.shape}, kept={int(self.mask.sum())})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RetentionSolution) and np.array_equal(self.mask, other.mask)

    __hash__ = None


@dataclass(frozen=True)
class RetentionEvaluation:
    """Objective and facts of a keep-mask (``cost`` is E, the reconstruction error).

    ``kept_sum`` is the sum of the kept ``|w|`` (the magnitude objective, for comparison),
    ``magnitude_cost`` the error of the magnitude mask under the same budget, ``retained_small`` the kept
    weights below the magnitude threshold (weights magnitude pruning would drop); ``weights`` the refit
    weights (compensated objective: zero where pruned; None for the masked objective).
    """

    cost: float
    row_costs: np.ndarray = field(repr=False)
    kept_count: int
    kept_sum: float
    feasible: bool
    retained_small: int
    magnitude_cost: float
    weights: np.ndarray | None = field(default=None, repr=False)

    @property
    def improvement(self) -> float:
        """Relative error reduction over magnitude pruning, 1 - cost / magnitude_cost (0 if both are 0)."""
        if self.magnitude_cost <= 0:
            return 0.0
        return 1.0 - self.cost / self.magnitude_cost

    def summary(self) -> dict:
        """The facts a result summary shows beside the common fields."""
        return {"magnitude_cost": self.magnitude_cost, "improvement": self.improvement,
                "retained_small": self.retained_small}


def _mask_of(instance: RetentionInstance, solution) -> np.ndarray:
    mask = solution.mask if isinstance(solution, RetentionSolution) else RetentionSolution(solution).mask
    if mask.shape != instance.shape:
        raise InvalidInstanceError(f"mask has shape {mask.shape}, the instance {instance.shape}: shape mismatch")
    return mask


def evaluate_retention(instance: RetentionInstance, solution) -> RetentionEvaluation:
    """E(M), per-row errors, kept count, feasibility and retained small weights of a keep-mask.

    Feasible means exactly k kept in every row (row scope) or in total (layer scope). O(m n^2), plus the
    refit's Cholesky factorizations under the compensated objective (O(k^3) per distinct row mask).
    """
    mask = _mask_of(instance, solution)
    row_costs, weights = instance.row_costs(mask)
    row_kept = mask.sum(axis=1)
    if instance.scope == "row":
        feasible = bool((row_kept == instance.k).all())
    else:
        feasible = int(row_kept.sum()) == instance.k
    small = mask & (np.abs(instance.weights) < instance.magnitude_threshold[:, None])
    return RetentionEvaluation(cost=float(row_costs.sum()), row_costs=row_costs, kept_count=int(row_kept.sum()),
                               kept_sum=float(np.abs(instance.weights)[mask].sum()), feasible=feasible,
                               retained_small=int(small.sum()), magnitude_cost=instance.magnitude_cost,
                               weights=weights)


def hessian_from_inputs(inputs, damping: float = 0.0) -> np.ndarray:
    """H = X X^T / N (+ damping * mean(diag H) * I) from inputs X of shape (n, N), accumulated in float64.

    ``inputs`` is one (n, N) array (or nested list) or an iterator of (n, N_b) chunks (streaming: only one chunk and the
    n x n sum are in memory). O(n^2 N).

    >>> hessian_from_inputs([[1.0, -1.0], [2.0, 0.0]])
    array([[1., 1.],
           [1., 2.]])
    >>> hessian_from_inputs(iter([np.ones((2, 1)), np.zeros((2, 1))]), damping=0.5).tolist()
    [[0.75, 0.5], [0.5, 0.75]]
    """
    damping = check_nonnegative(damping, "damping")
    chunks: Iterable = [inputs] if isinstance(inputs, (np.ndarray, list, tuple)) or hasattr(inputs, "detach") else inputs
    if not hasattr(chunks, "__iter__"):
        raise InvalidInstanceError(f"inputs must be an (n, N) matrix or an iterable of them, got {type(inputs).__name__}")
    total, count = None, 0
    for chunk in chunks:
        x = check_matrix(chunk, "inputs")
        if total is None:
            total = np.zeros((x.shape[0], x.shape[0]))
        elif x.shape[0] != total.shape[0]:
            raise InvalidInstanceError(f"input chunks must all have n = {total.shape[0]} rows, got {x.shape[0]}")
        total += x @ x.T
        count += x.shape[1]
    if total is None:
        raise InvalidInstanceError("inputs is empty: no calibration samples")
    return damped(total / count, damping)


def refit(weights, hessian, mask) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares refit of the kept weights of every row given the mask.

    Row i keeps S and prunes P; the refit minimizes (w - v)^T H (w - v) over v with v_P = 0, whose
    solution is v_S = w_S + H_SS^+ H_SP w_P (pseudo-inverse: a singular H_SS is allowed). Returns the
    refitted weights (zero where pruned) and the per-row errors after the refit (never above the
    errors before it). O(m (k^3 + n^2)).

    >>> w, e = refit([[1.0, 1.0]], [[1.0, 0.5], [0.5, 1.0]], [[True, False]])
    >>> w.tolist(), e.tolist()
    ([[1.5, 0.0]], [0.75])
    """
    w = check_matrix(weights, "weights")
    h = check_matrix(hessian, "hessian")
    mask = RetentionSolution(mask).mask
    if h.shape != (w.shape[1], w.shape[1]) or mask.shape != w.shape:
        raise InvalidInstanceError(f"refit: weights {w.shape}, hessian {h.shape}, mask {mask.shape} do not match")
    out = np.zeros_like(w)
    errors = np.zeros(w.shape[0])
    for i in range(w.shape[0]):
        s, p = np.flatnonzero(mask[i]), np.flatnonzero(~mask[i])
        v = w[i].copy()
        v[p] = 0.0
        if s.size and p.size:
            v[s] += np.linalg.lstsq(h[np.ix_(s, s)], h[np.ix_(s, p)] @ w[i, p], rcond=None)[0]
        out[i] = v
        d = w[i] - v
        errors[i] = max(0.0, float(d @ h @ d))
    return out, errors


def refit_error(instance: RetentionInstance, solution) -> float:
    """E after the least-squares refit of the kept weights (:func:`refit`): never above ``evaluate``'s cost.
    O(m (k^3 + n^2)).

    >>> inst = RetentionInstance([[1.0, 1.0]], [[1.0, 0.5], [0.5, 1.0]], k=1, damping=0)
    >>> refit_error(inst, RetentionSolution([[True, False]]))
    0.75
    """
    mask = _mask_of(instance, solution)
    return float(refit(instance.weights, instance.hessian, mask)[1].sum())
