"""Exact whole-network RC pruning as a 0/1 program, solved by OR-Tools CP-SAT (small networks only).

Booleans for kept rows (x), live channels (a), kept columns (z) and kept entries (e = x AND z) maximize
the weighted kept sum under the budgets; a channel is live only if a producer keeps its row, and a
column only if its channel is live. CP-SAT's objective bound becomes a proven lower bound on the cost.
"""
from __future__ import annotations

import math

import numpy as np
from ortools.sat.python import cp_model

from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_int_option

__all__ = ["network_cpsat"]

MAX_ENTRIES = 20_000


def _scale(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Integer ``q = round(v * scale)`` with a power-of-two scale (1 for integer data) so the scaled total
    stays below 2^40, and ``err = max |v - q / scale|`` (exact in float64)."""
    total = float(values.sum())
    exponent = 40 - math.frexp(total)[1] if total > 0 else 0
    if np.array_equal(values, np.rint(values)):
        exponent = min(exponent, 0)
    scale = 2.0 ** min(max(exponent, -1000), 1000)
    q = np.rint(values * scale)
    return q.astype(np.int64), scale, float(np.max(np.abs(values - q / scale), initial=0.0))


def _integer_coefficients(instance: NetworkInstance) -> list[int]:
    """The measure's per-entry spends as integers (weights, MACs); a table or a fractional coefficient
    has no exact linear model, which is refused rather than rounded."""
    m = instance.measure
    coef = [m.coef.get(n, 0.0) for n in instance.layer_names]
    if m.tables or any(c != int(c) for c in coef):
        raise InvalidInstanceError(
            f"network-cpsat models measures that count integer units per kept entry (weights, macs); measure "
            f"{m.name!r} has {'spend tables' if m.tables else 'fractional coefficients'}: use network-annealing, "
            "network-greedy or network-allocation")
    return [int(c) for c in coef]


def network_cpsat(instance: NetworkInstance, *, seed: int = 0, time_limit: float | None = None,
                  workers: int = 1, hint: bool = True, max_entries: int = MAX_ENTRIES) -> SolveResult:
    """Solve a small network exactly with CP-SAT.

    Guarantee: with status ``"optimal"`` the cost is the optimum; ``lower_bound`` is always a proven
    lower bound (CP-SAT's objective bound, minus the rounding of non-integer weighted scores).

    Parameters
    ----------
    instance : NetworkInstance
        At most ``max_entries`` score entries in all (one Boolean each).
    seed : int
        CP-SAT's random seed.
    time_limit : float, optional
        CP-SAT's time limit; the best solution found is returned (the greedy's if none).
    workers : int
        CP-SAT search workers (1: deterministic).
    hint : bool
        Start from the global greedy's solution.

    Returns
    -------
    SolveResult
        ``info``: ``cp_status``, ``scale``, ``rounding_error``, ``variables``.

    Notes
    -----
    Constraints: ``e <= x``, ``e <= z``, ``e >= x + z - 1`` per entry; ``z <= a`` for a column of a
    non-input channel; ``a <= sum of its producer rows``; protected rows ``x = 1``; per layer
    ``min_l <= sum e <= budget_l``; ``sum_l a_l sum e <= K`` with the measure's integer spend per entry
    ``a_l`` (1 for weights, output positions for MACs; a latency table is refused). Objective: maximize
    ``sum q e`` with ``q = round(w S * scale)``; the bound is ``weighted total - bound / scale - N * err``
    with ``N`` the most entries a solution keeps (``K`` for weights, all entries otherwise).
    The model has one Boolean per entry: exponential time in the worst case, for validation only.

    >>> from rcprune.solvers.network.cpsat import network_cpsat  # the canonical module
    >>> from rcprune.network.generate import chain_network
    >>> res = network_cpsat(chain_network(budget=20))
    >>> res.status, res.feasible
    ('optimal', True)
    """
    clock = Stopwatch(time_limit)
    if not isinstance(instance, NetworkInstance):
        raise InvalidInstanceError(f"expected a rcprune.NetworkInstance, got {type(instance).__name__}")
    workers = check_int_option(workers, "workers", minimum=1)
    max_entries = check_int_option(max_entries, "max_entries", minimum=1)
    if instance.total_entries > max_entries:
        raise InvalidInstanceError(f"network-cpsat is for small networks: {instance.total_entries} entries > "
                                   f"max_entries={max_entries} (one Boolean per entry)")
    per_entry = _integer_coefficients(instance)
    f = instance.flat
    weighted = np.concatenate([instance.weights[l] * instance.scores[n].ravel()
                               for l, n in enumerate(instance.layer_names)])
    q, scale, err = _scale(weighted)

    model = cp_model.CpModel()
    x = [model.NewBoolVar(f"x{i}") for i in range(f.row_off[-1])]
    z = [model.NewBoolVar(f"z{j}") for j in range(f.col_off[-1])]
    alive = {}
    for ch in range(f.chan_input.shape[0]):
        if f.chan_input[ch]:
            continue
        a = model.NewBoolVar(f"a{ch}")
        prods = [x[i] for i in f.prod_row[f.prod_ptr[ch]:f.prod_ptr[ch + 1]]]
        model.Add(a <= sum(prods))
        for p in prods:
            model.AddImplication(p, a)
        alive[ch] = a
    for i in np.flatnonzero(f.fixed_row):
        model.Add(x[i] == 1)
    for j in np.flatnonzero(f.fixed_col):
        model.Add(z[j] == 1)
    for j in range(f.col_off[-1]):
        ch = int(f.col_chan[j])
        if ch in alive:
            model.AddImplication(z[j], alive[ch])
    objective, counts = [], []
    layer_max = instance.layer_budget_array()
    for l in range(f.m.shape[0]):
        m, n, s0, r0, c0 = (int(v) for v in (f.m[l], f.n[l], f.score_off[l], f.row_off[l], f.col_off[l]))
        entries = []
        for i in range(m):
            for j in range(n):
                e = model.NewBoolVar(f"e{l}_{i}_{j}")
                model.AddBoolOr([x[r0 + i].Not(), z[c0 + j].Not(), e])
                model.AddImplication(e, x[r0 + i])
                model.AddImplication(e, z[c0 + j])
                entries.append(e)
                coef = int(q[s0 + i * n + j])
                if coef:
                    objective.append(coef * e)
        count = sum(entries)
        model.Add(count <= int(layer_max[l]))
        if instance.min_counts[l] > 0:
            model.Add(count >= int(instance.min_counts[l]))
        counts.append(count)
    if instance.budget is not None:
        model.Add(sum(a * count for a, count in zip(per_entry, counts)) <= math.floor(instance.budget + 1e-9))
    model.Maximize(sum(objective))

    greedy = None
    if hint:
        from rcprune.solvers.network.greedy import network_greedy

        greedy = network_greedy(instance)
        rows, cols = greedy.solution.effective(instance).to_flat(instance)
        for i, v in enumerate(rows):
            model.AddHint(x[i], bool(v))
        for j, v in enumerate(cols):
            model.AddHint(z[j], bool(v))

    solver = cp_model.CpSolver()
    params = solver.parameters
    params.random_seed = seed % 2 ** 31
    params.num_workers = workers
    if time_limit is not None:
        params.max_time_in_seconds = max(clock.remaining(), 0.01)
    code = solver.Solve(model)
    found = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    if code == cp_model.INFEASIBLE:
        raise InvalidInstanceError(f"{instance.name}: no feasible solution exists (CP-SAT proved it infeasible)")
    lower_bound = None
    if found or code == cp_model.UNKNOWN:
        bound = solver.BestObjectiveBound()
        if math.isfinite(bound):
            kept_max = instance.effective_budget if instance.measure.is_count else instance.total_entries
            lower_bound = instance.weighted_total - bound / scale - kept_max * err
    if found:
        rows = np.array([solver.BooleanValue(v) for v in x], bool)
        cols = np.array([solver.BooleanValue(v) for v in z], bool)
        solution = NetworkSolution.from_flat(instance, rows, cols)
    else:
        if greedy is None:
            from rcprune.solvers.network.greedy import network_greedy

            greedy = network_greedy(instance)
        solution = greedy.solution
    info = {"cp_status": solver.StatusName(code), "scale": scale, "rounding_error": err,
            "variables": len(x) + len(z) + len(alive) + instance.total_entries}
    return make_result(instance, solution, method="network-cpsat", runtime=clock.elapsed(),
                               iterations=int(solver.NumBranches()), lower_bound=lower_bound,
                               timed_out=code != cp_model.OPTIMAL and time_limit is not None, seed=seed,
                               info=info, proof_tolerance=1e-9)
