"""Values recomputed from a result's own fields, for assertions that a wrong answer breaks."""
from __future__ import annotations


def expected_gap(cost: float, lower_bound: float) -> float:
    """The certified gap (cost - lower_bound) / cost, 0 at cost <= 0, never negative."""
    return 0.0 if cost <= 0 else max(0.0, (cost - lower_bound) / cost)
