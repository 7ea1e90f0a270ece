"""Input validation for rcprune, in one place.

Every public entry point turns user input into one canonical form here and raises
:class:`InvalidInstanceError` with a message that names the argument and the problem.
Kernels and solvers trust what comes out of these functions and never re-check it.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Mapping

import numpy as np

__all__ = [
    "InvalidInstanceError",
    "check_hessian",
    "damped",
    "check_scores",
    "check_budget",
    "check_mask",
    "check_seed",
    "check_time_limit",
    "check_count",
    "check_int_option",
    "check_choice",
    "check_real_option",
    "check_flag",
    "check_nonnegative",
    "as_array",
    "check_matrix",
    "check_fraction",
    "kept_from_fraction",
    "check_name",
    "check_metadata",
    "check_format",
]


class InvalidInstanceError(ValueError):
    """Raised for any invalid problem input: scores, budgets, masks, files, options."""


def as_array(value, name: str, dtype=None) -> np.ndarray:
    """``np.asarray(value)`` with its failures (ragged lists, objects, overflow) as a named error."""
    if hasattr(value, "detach"):  # torch tensors without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except Exception as exc:
        raise InvalidInstanceError(f"{name} cannot be converted to an array: {exc}") from None


def _checked_matrix(value, name: str, copy: bool) -> tuple[np.ndarray, float]:
    """:func:`check_matrix`'s work, and the matrix's sum (float64; inf when finite values overflow it)."""
    arr = as_array(value, name)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise InvalidInstanceError(f"{name} must be a numeric (integer or float) matrix, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidInstanceError(f"{name} must be a 2-D matrix, got ndim={arr.ndim} (shape {arr.shape})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInstanceError(f"{name} is an empty matrix (shape {arr.shape})")
    if copy:
        arr = np.array(arr, dtype=np.float64, order="C", copy=True)
    elif arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(arr.sum(dtype=np.float64))
    if not np.isfinite(total):   # a finite sum has no NaN or inf in it: one pass, no mask
        finite = np.isfinite(arr)
        if not finite.all():
            i, j = np.argwhere(~finite)[0]
            kind = "NaN" if np.isnan(arr[i, j]) else "inf"
            raise InvalidInstanceError(f"{name} contains {int((~finite).sum())} non-finite value(s) ({kind} at [{i}, {j}])")
    return arr, total


def check_matrix(value, name: str, *, copy: bool = True) -> np.ndarray:
    """Return ``value`` as a writable, C-contiguous float64 copy of a finite, non-empty 2-D numeric matrix
    (with ``copy=False``: ``value`` itself where it is a float array of any precision, checked, for callers
    that copy it into float64 anyway).

    Accepts anything ``np.asarray`` understands (lists, int/float arrays, CPU tensors); rejects ragged or
    non-numeric data, booleans, wrong dimensionality, empty matrices and NaN/inf.
    """
    return _checked_matrix(value, name, copy)[0]


def check_scores(scores, name: str = "scores", *, copy: bool = True) -> np.ndarray:
    """Return ``scores`` as a read-only, C-contiguous float64 matrix of non-negative finite values whose sum is
    finite too (with ``copy=False``: validated, but possibly ``scores`` itself, its flags untouched)."""
    arr, total = _checked_matrix(scores, name, copy)
    if float(arr.min()) < 0:
        i, j = np.argwhere(arr < 0)[0]
        raise InvalidInstanceError(
            f"{name} must be non-negative; found negative score {arr[i, j]!r} at [{i}, {j}] "
            "(use rcprune.scores(w, kind='l1') to turn weights into scores)"
        )
    if not np.isfinite(total):   # every cost and bound is a difference of sums: they would be inf or nan
        raise InvalidInstanceError(f"{name} sum to more than a float64 holds (largest {float(arr.max())!r}); "
                                   "rescale them")
    if copy:
        arr.setflags(write=False)
    return arr


def check_fraction(value, name: str, *, allow_zero: bool, allow_one: bool) -> float:
    """Return a real number in [0, 1] (ends open unless allowed); strings, bools and NaN are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}")
    v = float(value)
    low_ok = v >= 0.0 if allow_zero else v > 0.0
    high_ok = v <= 1.0 if allow_one else v < 1.0
    if math.isnan(v) or not (low_ok and high_ok):
        interval = ("[" if allow_zero else "(") + "0, 1" + ("]" if allow_one else ")")
        raise InvalidInstanceError(f"{name} must be in {interval}, got {value!r}")
    return v


def kept_from_fraction(size: int, *, density=None, sparsity=None) -> int:
    """The one rounding rule of every instance kind: ``floor(density * size)`` kept (never more than asked).

    ``density`` is in (0, 1], ``sparsity`` in [0, 1) with density = 1 - sparsity; exactly one is given. A
    tolerance of 1e-9 absorbs float noise (``0.9 * 10`` keeps 9, not 8). The result may be 0; each kind
    decides whether 0 kept entries is a valid budget.

    >>> kept_from_fraction(10, sparsity=0.1), kept_from_fraction(9, density=0.15), kept_from_fraction(9, sparsity=0.9)
    (9, 1, 0)
    """
    if (density is None) == (sparsity is None):
        raise InvalidInstanceError("give exactly one of density or sparsity")
    if sparsity is not None:
        d = 1.0 - check_fraction(sparsity, "sparsity", allow_zero=True, allow_one=False)
    else:
        d = check_fraction(density, "density", allow_zero=False, allow_one=True)
    return min(size, math.floor(d * size + 1e-9))


def check_name(name) -> str:
    """Return a non-empty string name."""
    if not isinstance(name, str) or not name:
        raise InvalidInstanceError(f"name must be a non-empty string, got {name!r}")
    return name


def check_metadata(metadata) -> dict:
    """Return a JSON-serializable mapping with string keys as a plain dict (``None`` means empty)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInstanceError(f"metadata must be a mapping (dict) of JSON-serializable values, got {metadata!r}")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise InvalidInstanceError(f"metadata keys must be strings, got {bad[0]!r}")
    meta = dict(metadata)
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInstanceError(f"metadata must be JSON-serializable: {exc}") from None
    return meta


def check_format(meta: Mapping, path, what: str, version: int) -> None:
    """Refuse a file whose recorded ``format`` is not the version this rcprune reads."""
    found = meta.get("format")
    if found != version or isinstance(found, bool):
        raise InvalidInstanceError(
            f"{what} file {str(path)!r} has format version {found!r}; this rcprune reads version {version}")


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
    if sparsity is not None or density is not None:
        budget = kept_from_fraction(total, density=density, sparsity=sparsity)
        if budget < 1:
            what = f"sparsity {sparsity!r}" if sparsity is not None else f"density {density!r}"
            raise InvalidInstanceError(
                f"{what} keeps floor({1 - sparsity if sparsity is not None else density} * {total}) = 0 entries "
                f"of a {m} x {n} matrix: impossible budget")
    k = _check_int(budget, "budget")
    if not (1 <= k <= total):
        raise InvalidInstanceError(
            f"budget must be between 1 and m*n = {total} kept entries for a {m} x {n} matrix, got {k}"
        )
    return k, None


def check_mask(mask, length: int, name: str) -> np.ndarray:
    """Return a read-only boolean copy of a keep-mask, checking its dtype and length."""
    arr = as_array(mask, name)
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
    if isinstance(time_limit, (bool, np.bool_)) or not isinstance(time_limit, numbers.Real):
        raise InvalidInstanceError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    t = float(time_limit)
    if not t > 0 or math.isnan(t):
        raise InvalidInstanceError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    return t


def check_count(value, name: str, high: int) -> int:
    """Return an integer count in [0, high] (integral floats accepted; bools, strings and NaN refused)."""
    v = _check_int(value, name)
    if not 0 <= v <= high:
        raise InvalidInstanceError(f"{name} must be between 0 and {high}, got {v}")
    return v


def check_int_option(value, name: str, minimum: int = 0) -> int:
    """Return a solver option that must be an integer ``>= minimum``."""
    v = _check_int(value, name)
    if v < minimum:
        raise InvalidInstanceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def check_choice(value, name: str, choices) -> str:
    """One of ``choices`` (strings), or an error naming the option and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidInstanceError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_real_option(value, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """Return a solver option that must be a real number with ``low < value <= high``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (low < v <= high) or math.isnan(v) or math.isinf(v):
        raise InvalidInstanceError(f"{name} must be a finite number in ({low}, {high}], got {value!r}")
    return v



def check_schedule(seed, proposals, acceptance, final) -> tuple[int, int, float, float]:
    """The common options of the annealing solvers: ``(seed, proposals, acceptance, final)`` checked
    (proposals >= 0, 0 < acceptance < 1, 0 < final <= 1)."""
    return (check_seed(seed), check_int_option(proposals, "proposals", minimum=0),
            check_real_option(acceptance, "acceptance", low=1e-12, high=1.0 - 1e-12),
            check_real_option(final, "final", low=1e-300, high=1.0))

def check_nonnegative(value, name: str) -> float:
    """Return a finite real number >= 0 (bools, strings, NaN and inf are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidInstanceError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (0.0 <= v < math.inf):
        raise InvalidInstanceError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_flag(value, name: str) -> bool:
    """Return a solver option that must be True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInstanceError(f"{name} must be True or False, got {value!r}")
    return bool(value)


SYMMETRY_TOLERANCE = 1e-8   # relative to max |H|
PSD_TOLERANCE = 1e-8        # smallest eigenvalue >= -PSD_TOLERANCE * largest |eigenvalue|
DEFINITE_TOLERANCE = 1e-10  # positive definite: smallest eigenvalue > DEFINITE_TOLERANCE * largest
EXACT_SPECTRUM = 256        # up to this size the largest |eigenvalue| comes from eigvalsh, above it from Lanczos


def damped(h: np.ndarray, damping: float) -> np.ndarray:
    """H + damping * mean(diag H) * I (damping * I when diag H is all zero)."""
    if damping > 0:
        scale = float(np.mean(np.diag(h)))
        h = h + damping * (scale if scale > 0 else 1.0) * np.eye(h.shape[0])
    return h


def clears(h: np.ndarray, tolerance: float) -> bool:
    """Whether the symmetric ``h`` has smallest eigenvalue > ``tolerance`` x its largest |eigenvalue|: a
    Cholesky factorization of h - tolerance |lambda|_max I (O(n^3 / 3), against eigvalsh's ~9 n^3; large
    layers' H are 4608 x 4608). |lambda|_max by Lanczos above EXACT_SPECTRUM rows, to 1e-6."""
    n = h.shape[0]
    if n == 0:
        return True
    if n <= EXACT_SPECTRUM:
        top = float(np.abs(np.linalg.eigvalsh(h)[[0, -1]]).max())
    else:
        from scipy.sparse.linalg import eigsh

        top = float(abs(eigsh(h, k=1, which="LM", v0=np.ones(n), tol=1e-6, return_eigenvectors=False)[0]))
    try:
        np.linalg.cholesky(h - tolerance * top * np.eye(n))
    except np.linalg.LinAlgError:
        return False
    return True


def check_hessian(hessian, n: int | None, damping: float, definite: bool = False) -> np.ndarray:
    """A calibration Gram matrix H (n x n, symmetric, positive semi-definite; positive definite with
    ``definite``), symmetrized and damped: H + damping * mean(diag H) * I."""
    h = check_matrix(hessian, "hessian")
    if h.shape[0] != h.shape[1]:
        raise InvalidInstanceError(f"hessian must be square, got shape {h.shape}")
    if n is not None and h.shape[0] != n:
        raise InvalidInstanceError(
            f"hessian is {h.shape[0]} x {h.shape[1]} but the weights have n = {n} columns (inputs): shape mismatch")
    scale = float(np.abs(h).max())
    asym = float(np.abs(h - h.T).max())
    if asym > SYMMETRY_TOLERANCE * max(scale, 1e-300):
        i, j = np.unravel_index(np.argmax(np.abs(h - h.T)), h.shape)
        raise InvalidInstanceError(
            f"hessian must be symmetric: H[{i}, {j}] = {h[i, j]!r} but H[{j}, {i}] = {h[j, i]!r}")
    h = damped((h + h.T) / 2, damping)
    if clears(h, DEFINITE_TOLERANCE if definite else -PSD_TOLERANCE):
        return np.ascontiguousarray(h)
    eig = np.linalg.eigvalsh(h)     # only to say by how much it fails
    if eig[0] < -PSD_TOLERANCE * max(abs(eig[0]), abs(eig[-1])):
        raise InvalidInstanceError(
            f"hessian must be positive semi-definite (after damping {damping}); smallest eigenvalue {eig[0]:.3g}")
    if definite and not eig[0] > DEFINITE_TOLERANCE * max(abs(eig[-1]), 1e-300):
        raise InvalidInstanceError(
            f"the compensated objective needs a positive definite hessian (it refits on every kept set), but "
            f"after damping {damping} the smallest eigenvalue is {eig[0]:.3g} of {eig[-1]:.3g}: too few calibration "
            "samples for this damping; give damping > 0 (default 0.01) or more samples")
    return np.ascontiguousarray(h)
