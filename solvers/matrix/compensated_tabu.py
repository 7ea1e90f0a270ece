"""Tabu search over column swaps for data-aware RC, started from the swap search's local optimum.

Each step applies the best column swap (scored exactly over the kept rows R,
:meth:`rcprune.solvers.matrix.compensated_swap.SharedSupport.swap_deltas`) that is not tabu (a column
moved within the last ``tenure`` steps), even one that raises the cost, then chooses R again; a swap
reaching a new best is always allowed. The best (R, C) visited is returned, so the result is never above
the start's.
"""
from __future__ import annotations

import numpy as np

from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import check_int_option

from rcprune.solvers.matrix.compensated_swap import REFRESH, SharedSupport, compensated_rc_swap
from rcprune.solvers.matrix.structured_obs import best_rows

__all__ = ["compensated_rc_tabu"]


def compensated_rc_tabu(instance: CompensatedInstance, *, seed: int = 0, time_limit: float | None = None,
                        iterations: int = 300, tenure: int = 10) -> SolveResult:
    """Tabu search over column swaps from ``compensated-rc-swap``'s (R, C) (deterministic: ``seed`` is
    unused). Never above the start's cost, so never above structured-OBS's; no approximation guarantee.
    O(iterations (|R| k (n - k) + m n log m)) after the start.

    Parameters
    ----------
    iterations : int
        Swaps to walk.
    tenure : int
        Steps a moved column stays tabu.

    >>> import numpy as np, rcprune
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(6, 40)); x[1] += x[0]
    >>> inst = rcprune.Instance.from_layer(rng.laplace(size=(4, 6)), hessian=x @ x.T / 40, budget=8)
    >>> rcprune.solve(inst, method="compensated-rc-tabu").cost <= rcprune.solve(inst, method="compensated-rc-swap").cost
    True
    """
    iterations = check_int_option(iterations, "iterations", minimum=0)
    tenure = check_int_option(tenure, "tenure", minimum=0)
    clock = Stopwatch(time_limit)
    start = compensated_rc_swap(instance, time_limit=time_limit)
    rows, cols = start.solution.rows, start.solution.cols
    best = (start.cost, rows, cols)
    k, steps, timed_out = int(cols.sum()), 0, start.status == "time_limit"
    if 0 < k < instance.n and rows.any() and not timed_out:
        state = SharedSupport(instance.weights, instance.hessian, cols)
        last = np.full(instance.n, -(1 << 30))
        tol = 1e-12 * max(float(instance.energies.sum()), 1e-300)
        cost = start.cost
        for step in range(iterations):
            if timed_out := clock.expired():
                break
            deltas, pruned = state.swap_deltas(np.flatnonzero(rows))
            tabu = (step - last[state.slots] < tenure)[:, None] | (step - last[pruned] < tenure)[None, :]
            deltas = np.where(tabu & ~(cost + deltas < best[0] - tol), np.inf, deltas)
            j, b = np.unravel_index(np.argmin(deltas), deltas.shape)
            if not np.isfinite(deltas[j, b]):
                break
            last[state.slots[j]] = last[pruned[b]] = step
            state.swap(int(j), int(pruned[b]))
            steps += 1
            if steps % REFRESH == 0:
                state.refresh()
            cost, rows = best_rows(instance, state.errors, k)
            if cost < best[0] - tol:
                best = (cost, rows, state.cols)
    return make_result(instance, Solution(best[1], best[2]), method="compensated-rc-tabu", runtime=clock.elapsed(),
                       iterations=steps, seed=seed, timed_out=timed_out,
                       info={"swaps": steps, "start_cost": start.cost, "iterations": iterations, "tenure": tenure})
