"""Annealing starts and polish: completion to a Pareto shape, best responses."""
import numpy as np
from hypothesis import given

import rcprune
from rcprune.matrix import kernels
from rcprune.solvers.matrix import annealing_moves as moves
from rcprune.solvers.matrix.annealing_start import best_response, make_maximal
from rcprune.solvers.matrix.greedy_row_column import greedy_row_column

from tests.matrix.strategies import instances


def make(scores, kw) -> rcprune.Instance:
    return rcprune.Instance(scores, **kw)


@given(instances())
def test_pareto_shapes_and_completion(case):
    inst = make(*case)
    m, n, k = inst.m, inst.n, inst.budget
    rows, cols = moves.pareto_shapes(inst)
    undominated = {(r, c) for r in range(1, m + 1) for c in range(1, n + 1) if r * c <= k
                   and not ((r < m and (r + 1) * c <= k) or (c < n and r * (c + 1) <= k))}
    assert set(zip(rows.tolist(), cols.tolist())) == undominated
    rng = np.random.default_rng(0)
    r0 = rng.integers(0, m + 1)
    c0 = rng.integers(0, n + 1) if r0 == 0 else rng.integers(0, min(n, k // r0) + 1)
    start_rows = np.zeros(m, bool)
    start_rows[rng.choice(m, r0, replace=False)] = True
    start_cols = np.zeros(n, bool)
    start_cols[rng.choice(n, c0, replace=False)] = True
    full_rows, full_cols = make_maximal(inst, start_rows, start_cols)
    assert (full_rows.sum(), full_cols.sum()) in undominated
    assert kernels.kept_sum(inst.scores, full_rows, full_cols) >= kernels.kept_sum(inst.scores, start_rows, start_cols)


@given(instances())
def test_best_response_never_loses(case):
    inst = make(*case)
    greedy = greedy_row_column(inst)
    rows, cols = best_response(inst, greedy.solution.rows, greedy.solution.cols)
    assert rcprune.evaluate(inst, rcprune.Solution(rows, cols)).feasible
    assert kernels.kept_sum(inst.scores, rows, cols) >= greedy.kept_sum - 1e-9
