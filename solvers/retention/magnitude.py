"""Baselines for small-weight retention: keep the k largest |w| (magnitude), or the k largest w^2 H_jj
(diagonal: the error of pruning each weight alone, ignoring the correlations between inputs).

Magnitude is optimal when H is a multiple of I (then E = h * sum of the pruned w^2); diagonal is optimal
whenever H is diagonal. Both are the reference points ("E before") of the other retention solvers.
"""
from __future__ import annotations

import numpy as np

from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.retention.model import RetentionInstance, RetentionSolution, magnitude_mask

__all__ = ["magnitude", "diagonal"]


def magnitude(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Keep the top-k |w| of every row (row scope) or of the layer (layer scope); ties by lower index.

    Optimal when H = c I (c >= 0). O(m n log n).

    >>> import rcprune
    >>> inst = rcprune.RetentionInstance([[0.5, -2.0, 1.0]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], k=2, objective="masked")
    >>> magnitude(inst).solution.mask.tolist(), magnitude(inst).cost
    ([[False, True, True]], 0.25)
    """
    clock = Stopwatch(time_limit)
    return make_result(instance, RetentionSolution(magnitude_mask(instance)), method="magnitude", runtime=clock.elapsed(),
                                 iterations=1, seed=seed)


def diagonal(instance: RetentionInstance, *, seed: int = 0, time_limit: float | None = None) -> SolveResult:
    """Keep the top-k w_j^2 H_jj per row (or in the layer); ties by lower index.

    Optimal when H is diagonal. O(m n log n).

    >>> import rcprune
    >>> inst = rcprune.RetentionInstance([[0.5, -2.0, 1.0]], [[9, 0, 0], [0, 1, 0], [0, 0, 1]], k=2, objective="masked")
    >>> diagonal(inst).solution.mask.tolist()
    [[True, True, False]]
    """
    clock = Stopwatch(time_limit)
    scores = instance.weights ** 2 * np.diag(instance.hessian)[None, :]
    return make_result(instance, RetentionSolution(magnitude_mask(instance, scores)), method="diagonal",
                                 runtime=clock.elapsed(), iterations=1, seed=seed)
