import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session", autouse=True)
def warm_numba():
    """Compile the jitted kernels once per session so property tests time only the work."""
    from rcprune.matrix import kernels
    s = np.ones((2, 3))
    rows, cols = np.array([True, False]), np.array([True, False, True])
    kernels.kept_sum(s, rows, cols)
    kernels.restricted_col_sums(s, rows)
    kernels.restricted_row_sums(s, cols)
    kernels.top_k_sum(np.ones(3), 2)
    yield
