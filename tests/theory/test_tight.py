"""The tight families of proofs/approximation.md ("Tightness") and the proven optima of problem.md
("Instances with a proven optimum"): ratios, costs and optima as claimed, for every tie-breaking."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

import rcprune
from rcprune.theory.tight import TIGHT_FAMILIES, column_row_tight, independent_tight, row_column_tight, tight_instance
from tests.matrix.bruteforce import all_subsets, brute_force
from tests.matrix.strategies import score_matrices

GREEDIES = ("greedy-independent", "greedy-row-column", "greedy-column-row")


def _cost(inst: rcprune.Instance, method: str) -> float:
    res = rcprune.solve(inst, method=method)
    assert res.feasible
    return res.cost


def _optimum_k1(inst: rcprune.Instance) -> float:
    """OPT for K = 1 from the definition: the feasible non-empty solutions are the single entries."""
    assert inst.budget == 1
    return inst.total - float(inst.scores.max())


def _permuted(inst: rcprune.Instance, seed: int) -> rcprune.Instance:
    """The same instance with rows and columns shuffled: moves every tie to other indices."""
    rng = np.random.default_rng(seed)
    s = inst.scores[rng.permutation(inst.m)][:, rng.permutation(inst.n)]
    return inst.replace(scores=s)


@pytest.mark.parametrize("family", list(TIGHT_FAMILIES))
@pytest.mark.parametrize("eps", [1e-4, 3e-4])
@pytest.mark.parametrize("block", [1, 2])
def test_ratio_tends_to_two(family, eps, block):
    """approximation.md, Claims A, B, B': for small eps each family's algorithms reach ratio >= 2 - 2 eps
    (so >= 2 - 1e-3), never above 2, with the claimed costs and optimum."""
    inst = tight_instance(family, eps, block)
    meta = inst.metadata
    k2 = block * block
    assert meta["family"] == family and meta["eps"] == eps and meta["block"] == block
    assert meta["optimum_cost"] == pytest.approx((1 + eps) * k2, rel=1e-12)
    if block == 1:
        assert inst.budget == 1 and inst.fixed_shape is None
        assert _optimum_k1(inst) == pytest.approx(meta["optimum_cost"], rel=1e-12)
    else:
        assert inst.fixed_shape == (block, block)
    for method in meta["tight_for"]:
        cost = _cost(inst, method)
        ratio = cost / meta["optimum_cost"]
        assert cost == pytest.approx(meta["greedy_cost"], rel=1e-12), method
        assert ratio == pytest.approx(meta["ratio"], rel=1e-12)
        assert 2 - 2 * eps <= ratio <= 2
        assert ratio >= 2 - 1e-3


@pytest.mark.parametrize("eps", [0.5, 0.1, 1e-2, 1e-3])
def test_ratio_formulas(eps):
    """approximation.md, Claims A and B: ratio 2 / (1 + eps) and 2 - (eps + x) / (1 + eps), x = (1 + eps) / p."""
    assert independent_tight(eps).metadata["ratio"] == pytest.approx(2 / (1 + eps), rel=1e-12)
    p = max(2, math.ceil(1 / eps))
    x = (1 + eps) / p
    for inst in (row_column_tight(eps), column_row_tight(eps)):
        assert inst.metadata["ratio"] == pytest.approx(2 - (eps + x) / (1 + eps), rel=1e-12)
        assert inst.metadata["greedy_cost"] == pytest.approx(2 + eps - x, rel=1e-12)
    assert row_column_tight(eps).scores.shape == (2, p)
    assert np.array_equal(column_row_tight(eps).scores, row_column_tight(eps).scores.T)


@pytest.mark.parametrize("family", list(TIGHT_FAMILIES))
@pytest.mark.parametrize("eps, block", [(0.3, 1), (0.3, 2), (0.45, 3), (0.1, 1)])
def test_claims_against_brute_force(family, eps, block):
    """approximation.md, Claims A, B, B' on members small enough for the brute force: the stored optimum is
    OPT, the algorithms in tight_for cost greedy_cost, and the others are optimal."""
    inst = tight_instance(family, eps, block)
    assert inst.m + inst.n <= 16  # small enough for the brute force
    opt, _, _ = brute_force(inst.scores, budget=None if inst.fixed_shape else inst.budget, shape=inst.fixed_shape)
    meta = inst.metadata
    assert opt == pytest.approx(meta["optimum_cost"], rel=1e-12)
    for method in GREEDIES:
        expected = meta["greedy_cost"] if method in meta["tight_for"] else opt
        assert _cost(inst, method) == pytest.approx(expected, rel=1e-12), method


@pytest.mark.parametrize("family", list(TIGHT_FAMILIES))
@pytest.mark.parametrize("seed", range(4))
def test_costs_do_not_depend_on_tie_breaking(family, seed):
    """approximation.md, Tightness: "for every tie-breaking". Shuffling rows and columns moves every tie to
    other indices (the code breaks ties by lowest index); the costs must not change."""
    for block in (1, 2):
        inst = tight_instance(family, 0.01, block)
        shuffled = _permuted(inst, seed)
        for method in GREEDIES:
            assert _cost(shuffled, method) == pytest.approx(_cost(inst, method), rel=1e-12), method


@pytest.mark.parametrize("eps", [0, 1, -0.1, 1.5, float("nan"), "0.1", True])
def test_invalid_eps(eps):
    for family in TIGHT_FAMILIES:
        with pytest.raises(rcprune.InvalidInstanceError, match="eps must"):
            tight_instance(family, eps)


@pytest.mark.parametrize("block", [0, -2, 1.5, True])
def test_invalid_block(block):
    with pytest.raises(rcprune.InvalidInstanceError, match="block must"):
        independent_tight(0.1, block)


def test_unknown_family_and_size_cap():
    with pytest.raises(rcprune.InvalidInstanceError, match="unknown tight family"):
        tight_instance("tight-nothing", 0.1)
    with pytest.raises(rcprune.InvalidInstanceError, match="entries"):
        row_column_tight(1e-7, 2)


@settings(max_examples=300)
@given(score_matrices(max_m=6, max_n=6))
def test_greedy_b_with_budget_one_is_below_two_minus_one_over_n(scores):
    """approximation.md, "Why the family is wide": with K = 1, greedy B's ratio is at most 2 - 1/n."""
    inst = rcprune.Instance(scores, budget=1)
    opt = _optimum_k1(inst)
    cost = _cost(inst, "greedy-row-column")
    assert cost <= (2 - 1 / inst.n) * opt + 1e-9 * max(1.0, inst.total)


@pytest.mark.parametrize("m, n, r, c, seed", [(4, 5, 2, 2, 0), (5, 4, 1, 3, 1), (6, 6, 3, 2, 2), (3, 7, 3, 1, 3),
                                               (6, 5, 2, 3, 4), (7, 7, 1, 1, 5)])
def test_planted_block_is_the_unique_optimum(m, n, r, c, seed):
    """problem.md, "Instances with a proven optimum": the planted block is the unique optimal solution and
    the stored best known cost is OPT."""
    inst = rcprune.generate("planted", m, n, seed=seed, rows=r, cols=c)
    br, bc = all_subsets(m), all_subsets(n)
    kept = br @ inst.scores @ bc.T
    kept[np.outer(br.sum(axis=1), bc.sum(axis=1)) > inst.budget] = -np.inf
    best = np.argwhere(kept == kept.max())
    assert len(best) == 1
    i, j = best[0]
    assert np.flatnonzero(br[i]).tolist() == inst.metadata["planted_rows"]
    assert np.flatnonzero(bc[j]).tolist() == inst.metadata["planted_cols"]
    assert inst.total - kept.max() == pytest.approx(inst.metadata["best_known_cost"], rel=1e-12)


def test_ties_can_attain_ratio_two_exactly():
    """approximation.md, Tightness, Remark (4): with ties (lowest index first) greedies A and B cost exactly
    2 OPT on this 4 x 2 instance with shape (2, 1); the mirror is optimal."""
    inst = rcprune.Instance([[1, 0], [0, 1], [0, 0], [0, 1]], shape=(2, 1))
    opt, rows, cols = brute_force(inst.scores, shape=(2, 1))
    assert opt == 1 and np.flatnonzero(rows).tolist() == [1, 3] and np.flatnonzero(cols).tolist() == [1]
    assert _cost(inst, "greedy-independent") == _cost(inst, "greedy-row-column") == 2 * opt
    assert _cost(inst, "greedy-column-row") == opt
