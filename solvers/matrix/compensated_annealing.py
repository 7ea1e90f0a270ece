"""Simulated annealing for data-aware RC: random column swaps on the compensated objective, from the swap
search's local optimum.

Each step proposes one swap (a kept column out, a pruned one in, uniformly) and scores it exactly over the
kept rows R in O(|R|) (:func:`swap_delta`, one entry of
:meth:`rcprune.solvers.matrix.compensated_swap.SharedSupport.swap_deltas`); Metropolis acceptance at a
temperature cooled geometrically from one that accepts the start's mean worsening swap with probability
``acceptance``; an accepted swap is applied to every row (O(m n + n k)) and R chosen again (the rows of
largest benefit). The best (R, C) visited is returned, so the result is never above the start's. The random
stream depends on ``seed`` only. A heuristic: it proves nothing.
"""
from __future__ import annotations

import math

import numpy as np

from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import check_schedule

from rcprune.solvers import check_objective
from rcprune.solvers.matrix.compensated_swap import REFRESH, SharedSupport, compensated_rc_swap
from rcprune.solvers.matrix.structured_obs import best_rows

__all__ = ["compensated_rc_annealing", "swap_delta"]

SAMPLES = 64       # proposals scored to set the first temperature
CHECK_EVERY = 64   # proposals between time-limit checks


def swap_delta(state: SharedSupport, rows: np.ndarray, j: int, q: int) -> float:
    """The exact cost change over ``rows`` when the column in slot ``j`` leaves and column ``q`` enters
    (the rows fixed). O(|rows|)."""
    a = state.a[j, j]
    v = state.v[rows, state.slots[j]]
    g = state.g[rows, q]
    z = state.mm[q, j] / a
    vsq = float(v @ v)
    num = float(g @ g) + 2 * z * float(v @ g) + z * z * vsq
    den = state.schur[q] + z * state.mm[q, j]
    return vsq / a - (num / den if den > 0 else 0.0)


def compensated_rc_annealing(instance: CompensatedInstance, *, seed: int = 0, time_limit: float | None = None,
                             proposals: int = 5000, acceptance: float = 0.05, final: float = 1e-3) -> SolveResult:
    """Simulated annealing over column swaps from ``compensated-rc-swap``'s (R, C).

    Never above the start's cost (so never above structured-OBS's); no approximation guarantee.
    O(proposals |R| + accepted (m n + n k + m log m)) after the start.

    Parameters
    ----------
    proposals : int
        Swaps proposed.
    acceptance : float
        Probability with which the first temperature accepts the mean worsening swap (0 < . < 1).
    final : float
        Last temperature as a share of the first (0 < . <= 1; geometric cooling).

    >>> import numpy as np, rcprune
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(6, 40)); x[1] += x[0]
    >>> inst = rcprune.Instance.from_layer(rng.laplace(size=(4, 6)), hessian=x @ x.T / 40, budget=8)
    >>> sa = rcprune.solve(inst, method="compensated-rc-annealing", seed=1)
    >>> sa.cost <= rcprune.solve(inst, method="compensated-rc-swap").cost
    True
    """
    check_objective(instance, "compensated-rc-annealing")
    seed, proposals, acceptance, final = check_schedule(seed, proposals, acceptance, final)
    clock = Stopwatch(time_limit)
    start = compensated_rc_swap(instance, time_limit=time_limit)
    rows, cols = start.solution.rows, start.solution.cols
    best = (start.cost, rows, cols)
    k, steps, accepted = int(cols.sum()), 0, 0
    timed_out = start.status == "time_limit"
    if 0 < k < instance.n and rows.any() and not timed_out:
        rng = np.random.default_rng(seed)
        state = SharedSupport(instance.weights, instance.hessian, cols)
        kept, pruned = np.flatnonzero(rows), np.flatnonzero(~cols)
        tol = 1e-12 * max(float(instance.energies.sum()), 1e-300)
        worse = [d for d in (swap_delta(state, kept, int(rng.integers(k)), int(rng.choice(pruned)))
                             for _ in range(SAMPLES)) if d > tol]
        temp = (np.mean(worse) if worse else tol) / -math.log(acceptance)
        cool = final ** (1.0 / max(proposals - 1, 1))
        for steps in range(1, proposals + 1):
            if steps % CHECK_EVERY == 0 and (timed_out := clock.expired()):
                break
            j, q = int(rng.integers(k)), int(pruned[rng.integers(pruned.size)])
            delta = swap_delta(state, kept, j, q)
            if delta <= 0 or rng.random() < math.exp(-delta / temp):
                state.swap(j, q)
                accepted += 1
                if accepted % REFRESH == 0:
                    state.refresh()
                cost, rows = best_rows(instance, state.errors, k)
                kept, pruned = np.flatnonzero(rows), np.flatnonzero(~state.cols)
                if cost < best[0] - tol:
                    best = (cost, rows, state.cols)
            temp *= cool
    return make_result(instance, Solution(best[1], best[2]), method="compensated-rc-annealing",
                       runtime=clock.elapsed(), iterations=steps, seed=seed, timed_out=timed_out,
                       info={"accepted": accepted, "start_cost": start.cost, "proposals": proposals})
