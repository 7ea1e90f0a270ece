"""Hypothesis strategies shared by the tests: small score matrices (integer and float) and budgets."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def score_matrices(draw, max_m: int = 8, max_n: int = 8, integer: bool | None = None):
    m = draw(st.integers(1, max_m))
    n = draw(st.integers(1, max_n))
    if integer is None:
        integer = draw(st.booleans())
    if integer:
        elems = st.integers(0, 9).map(float)
    else:
        elems = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False, width=64)
    return draw(hnp.arrays(np.float64, (m, n), elements=elems))


@st.composite
def instances(draw, max_m: int = 8, max_n: int = 8, integer: bool | None = None, fixed_shape: bool = False):
    """(scores, budget-kwargs) with every budget from 1 to m*n reachable."""
    s = draw(score_matrices(max_m, max_n, integer))
    m, n = s.shape
    if fixed_shape:
        return s, {"shape": (draw(st.integers(1, m)), draw(st.integers(1, n)))}
    return s, {"budget": draw(st.integers(1, m * n))}
