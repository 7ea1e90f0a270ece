"""Importance scores from weights: the matrix view of a layer and its entry magnitudes."""
from __future__ import annotations

import numpy as np

from rcprune.validation import InvalidInstanceError, as_array, check_scores

__all__ = ["scores", "matrix_view"]


def matrix_view(weight) -> np.ndarray:
    """A layer's weights as a matrix: rows = output channels, columns = the rest (im2col order).

    A conv weight (C_out, C_in, kh, kw) becomes (C_out, C_in*kh*kw); a linear weight stays as is.

    >>> matrix_view(np.zeros((8, 3, 3, 3))).shape
    (8, 27)
    """
    w = as_array(weight, "weights")
    if w.dtype == bool or w.dtype.kind not in "iuf":
        raise InvalidInstanceError(f"weights must be numeric, got dtype {w.dtype}")
    if w.ndim < 2:
        raise InvalidInstanceError(f"weights must have at least 2 dimensions (out, in, ...), got shape {w.shape}")
    return w.reshape(w.shape[0], -1)


def scores(weight, kind: str = "l1") -> np.ndarray:
    """Entry importance from weights: ``kind="l1"`` gives |w|, ``kind="l2"`` gives w**2.

    >>> scores([[1.0, -2.0], [0.5, 0.0]], kind="l2").tolist()
    [[1.0, 4.0], [0.25, 0.0]]
    """
    w = matrix_view(weight).astype(np.float64)
    if not isinstance(kind, str):
        raise InvalidInstanceError(f"score kind must be 'l1' or 'l2', got {kind!r}")
    if kind == "l1":
        s = np.abs(w)
    elif kind == "l2":
        s = np.square(w)
    else:
        raise InvalidInstanceError(f"unknown score kind {kind!r}; use 'l1' or 'l2' or pass your own scores")
    return np.array(check_scores(s, name="weights"))
