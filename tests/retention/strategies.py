"""Hypothesis strategies for retention tests: Laplace-like weights, PSD H from random inputs, masks."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def layers(draw, max_m: int = 4, max_n: int = 8, min_n: int = 1):
    """(W, H): W (m, n) and H = X X^T / N from correlated inputs (sometimes rank-deficient, or I)."""
    m = draw(st.integers(1, max_m))
    n = draw(st.integers(min_n, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.laplace(size=(m, n))
    if draw(st.booleans()):
        w = np.round(w, 1)  # ties in |w|
    kind = draw(st.sampled_from(["correlated", "low-rank", "identity"]))
    if kind == "identity":
        h = np.eye(n)
    else:
        samples = draw(st.integers(1, n)) if kind == "low-rank" else 3 * n
        x = rng.normal(size=(n, samples))
        x = x + rng.normal(size=(n, n)) @ x * draw(st.floats(0.0, 1.0))  # mix: correlated inputs
        h = x @ x.T / samples
    return w, h


def random_mask(rng, m: int, n: int, k: int) -> np.ndarray:
    mask = np.zeros((m, n), dtype=bool)
    for i in range(m):
        mask[i, rng.choice(n, k, replace=False)] = True
    return mask
