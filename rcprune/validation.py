"""Input validation for rcprune, in one place.

Every public entry point turns user input into one canonical form here and raises
:class:`InvalidInstanceError` with a message that names the argument and the problem.
Kernels and solvers trust what comes out of these functions and never re-check it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "InvalidInstanceError",
    "check_scores",
    "check_budget",
    "check_mask",
    "check_seed",
    "check_time_limit",
    "check_int_option",
    "check_real_option",
    "check_flag",
]


class InvalidInstanceError(ValueError):
    """Raised for any invalid problem input: scores, budgets, masks, files, options."""


def check_scores(scores, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a read-only, C-contiguous float64 matrix.

    Accepts anything ``np.asarray`` understands (lists, int/float arrays, CPU tensors).
    Rejects wrong dimensionality, empty matrices, non-numeric data, NaN/inf and negative values.
    """
    if hasattr(scores, "detach"):  # torch tensors without importing torch
        scores = scores.detach().cpu().numpy()
    try:
        arr = np.asarray(scores)
    except Exception as exc:  # ragged lists and the like
        raise InvalidInstanceError(f"{name} cannot be converted to an array: {exc}") from None
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise InvalidInstanceError(
            f"{name} must be a numeric (integer or float) matrix, got dtype {arr.dtype}"
        )
    if arr.ndim != 2:
        raise InvalidInstanceError(f"{name} must be a 2-D matrix, got ndim={arr.ndim} (shape {arr.shape})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInstanceError(f"{name} is an empty matrix (shape {arr.shape})")
    arr = np.array(arr, dtype=np.float64, order="C", copy=True)
    finite = np.isfinite(arr)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(arr[i, j]) else "inf"
        raise InvalidInstanceError(
            f"{name} contains {int((~finite).sum())} non-finite value(s) ({kind} at [{i}, {j}])"
        )
    if (arr < 0).any():
        i, j = np.argwhere(arr < 0)[0]
        raise InvalidInstanceError(
            f"{name} must be non-negative; found negative score {arr[i, j]!r} at [{i}, {j}] "
            "(use rcprune.scores(w, kind='l1') to turn weights into scores)"
        )
    arr.setflags(write=False)
    return arr


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        raise InvalidInstanceError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_budget(
    m: int,
    n: int,
    budget=None,
    *,
    density=None,
    sparsity=None,
    shape=None,
) -> tuple[int, tuple[int, int] | None]:
    """Resolve exactly one budget specification into ``(K, shape)``.

    ``budget`` is the maximum number of kept entries K (1 <= K <= m*n); ``density`` d in (0, 1]
    gives K = floor(d*m*n); ``sparsity`` s in [0, 1) gives density 1 - s; ``shape=(r, c)`` asks for
    exactly r kept rows and c kept columns (K = r*c). A resulting K of 0 is an impossible budget.
    """
    given = [k for k, v in (("budget", budget), ("density", density), ("sparsity", sparsity), ("shape", shape)) if v is not None]
    if len(given) != 1:
        raise InvalidInstanceError(
            "give exactly one of budget, density, sparsity or shape; got "
            + (", ".join(given) if given else "none")
        )
    total = m * n
    if shape is not None:
        try:
            r, c = shape
        except (TypeError, ValueError):
            raise InvalidInstanceError(f"shape must be a pair (rows, cols), got {shape!r}") from None
        r, c = _check_int(r, "shape rows"), _check_int(c, "shape cols")
        if not (1 <= r <= m) or not (1 <= c <= n):
            raise InvalidInstanceError(
                f"shape ({r}, {c}) is impossible for a {m} x {n} matrix: need 1 <= rows <= {m} and 1 <= cols <= {n}"
            )
        return r * c, (r, c)
    if sparsity is not None:
        s = float(sparsity)
        if not (0.0 <= s < 1.0) or math.isnan(s):
            raise InvalidInstanceError(f"sparsity must be in [0, 1), got {sparsity!r}")
        density = 1.0 - s
    if density is not None:
        d = float(density)
        if not (0.0 < d <= 1.0) or math.isnan(d):
            raise InvalidInstanceError(f"density must be in (0, 1], got {density!r}")
        budget = math.floor(d * total + 1e-9)
        if budget < 1:
            raise InvalidInstanceError(
                f"density {d} keeps floor({d} * {total}) = 0 entries of a {m} x {n} matrix: impossible budget"
            )
    k = _check_int(budget, "budget")
    if not (1 <= k <= total):
        raise InvalidInstanceError(
            f"budget must be between 1 and m*n = {total} kept entries for a {m} x {n} matrix, got {k}"
        )
    return k, None


def check_mask(mask, length: int, name: str) -> np.ndarray:
    """Return a read-only boolean copy of a keep-mask, checking its dtype and length."""
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if arr.dtype.kind in "iu" and arr.size and np.isin(arr, (0, 1)).all():
            arr = arr.astype(bool)
        elif arr.dtype.kind in "iu" and arr.size == 0:
            arr = arr.astype(bool)
        else:
            raise InvalidInstanceError(
                f"{name} must be a boolean keep-mask (or 0/1 integers), got dtype {arr.dtype}"
            )
    if arr.ndim != 1 or arr.shape[0] != length:
        raise InvalidInstanceError(f"{name} must have length {length}, got shape {arr.shape}")
    arr = np.array(arr, dtype=np.bool_, copy=True)
    arr.setflags(write=False)
    return arr


def check_seed(seed) -> int:
    """Return a non-negative integer seed (``None`` means 0: results stay reproducible)."""
    if seed is None:
        return 0
    s = _check_int(seed, "seed")
    if s < 0:
        raise InvalidInstanceError(f"seed must be a non-negative integer, got {seed!r}")
    return s


def check_time_limit(time_limit) -> float | None:
    """Return a positive time limit in seconds, or ``None`` for no limit."""
    if time_limit is None:
        return None
    t = float(time_limit)
    if not t > 0 or math.isnan(t):
        raise InvalidInstanceError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    return t


def check_int_option(value, name: str, minimum: int = 0) -> int:
    """Return a solver option that must be an integer ``>= minimum``."""
    v = _check_int(value, name)
    if v < minimum:
        raise InvalidInstanceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def check_real_option(value, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """Return a solver option that must be a real number with ``low < value <= high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (low < v <= high) or math.isnan(v) or math.isinf(v):
        raise InvalidInstanceError(f"{name} must be a finite number in ({low}, {high}], got {value!r}")
    return v


def check_flag(value, name: str) -> bool:
    """Return a solver option that must be True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInstanceError(f"{name} must be True or False, got {value!r}")
    return bool(value)
