"""RetentionInstance validation, evaluation, Hessian accumulation and refit."""
import numpy as np
import pytest
from hypothesis import given

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance, evaluate_retention, hessian_from_inputs, refit
from rcprune.result import make_result
from rcprune.validation import kept_from_fraction
from rcprune.retention.model import magnitude_mask, refit_error

from tests.retention.strategies import layers


def test_validation_messages():
    w, h = np.ones((2, 3)), np.eye(3)
    with pytest.raises(InvalidInstanceError, match="shape mismatch"):
        RetentionInstance(w, np.eye(4), k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="square"):
        RetentionInstance(w, np.ones((3, 2)), k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="NaN"):
        RetentionInstance(np.array([[1.0, np.nan, 0.0]]), h, k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="inf"):
        RetentionInstance(w, np.diag([1.0, np.inf, 1.0]), k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="symmetric"):
        RetentionInstance(w, [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]], k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="positive semi-definite"):
        RetentionInstance(w, np.diag([1.0, -1.0, 1.0]), k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="between 0 and 3"):
        RetentionInstance(w, h, k=4, objective="masked")
    with pytest.raises(InvalidInstanceError, match="between 0 and 6"):
        RetentionInstance(w, h, k=7, scope="layer", objective="masked")
    with pytest.raises(InvalidInstanceError, match="exactly one of k .* got none"):
        RetentionInstance(w, h, objective="masked")
    with pytest.raises(InvalidInstanceError, match="got k, sparsity"):
        RetentionInstance(w, h, k=1, sparsity=0.5, objective="masked")
    with pytest.raises(InvalidInstanceError, match="scope"):
        RetentionInstance(w, h, k=1, scope="column", objective="masked")
    with pytest.raises(InvalidInstanceError, match="damping"):
        RetentionInstance(w, h, k=1, damping=-1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="2-D"):
        RetentionInstance(np.ones(3), h, k=1, objective="masked")
    inst = RetentionInstance(w, h, k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="shape mismatch"):
        evaluate_retention(inst, np.ones((3, 3), bool))
    with pytest.raises(AttributeError):
        inst.k = 2


def test_damping_makes_indefinite_noise_and_singular_h_acceptable():
    h = np.array([[1.0, 1.0], [1.0, 1.0]])  # singular: allowed as it is
    assert RetentionInstance(np.ones((1, 2)), h, k=1, objective="masked").hessian.tolist() == h.tolist()
    inst = RetentionInstance(np.ones((1, 2)), h, k=1, damping=0.1, objective="masked")
    assert np.allclose(inst.hessian, h + 0.1 * np.eye(2))
    with pytest.raises(InvalidInstanceError, match="semi-definite"):
        RetentionInstance(np.ones((1, 2)), [[1.0, 1.5], [1.5, 1.0]], k=1, objective="masked")


def test_sparsity_resolves_k():
    w, h = np.ones((4, 10)), np.eye(10)
    assert RetentionInstance(w, h, sparsity=0.9, objective="masked").k == 1
    assert RetentionInstance(w, h, sparsity=0.9, scope="layer", objective="masked").k == 4
    assert RetentionInstance(w, h, sparsity=0.0, objective="masked").total_kept == 40
    # one rounding rule for every kind: floor(density * size), as for a matrix of the same size
    for s in (0.05, 0.35, 0.66, 0.9, 0.999):
        row, layer = RetentionInstance(w, h, sparsity=s, objective="masked"), RetentionInstance(w, h, sparsity=s, scope="layer", objective="masked")
        assert row.k == RetentionInstance(w, h, density=1 - s, objective="masked").k == kept_from_fraction(10, sparsity=s)
        assert layer.budget == layer.k == (rcprune.Instance(np.ones((4, 10)), sparsity=s).budget if s < 0.99 else 0)
    assert RetentionInstance(w, h, budget=3, objective="masked").k == 3

@given(layers())
def test_evaluation_matches_definition(layer):
    w, h = layer
    m, n = w.shape
    k = n // 2
    inst = RetentionInstance(w, h, k=k, objective="masked")
    mask = np.random.default_rng(0).permuted(np.arange(n) < k)[None, :].repeat(m, axis=0)
    ev = evaluate_retention(inst, mask)
    d = np.where(mask, 0.0, w)
    assert np.isclose(ev.cost, np.einsum("ij,jk,ik->", d, h, d), rtol=1e-9, atol=1e-9)
    assert ev.feasible and ev.kept_count == m * k
    thr = -np.sort(-np.abs(w), axis=1)[:, k - 1] if k else np.full(m, np.inf)
    assert ev.retained_small == int((mask & (np.abs(w) < thr[:, None])).sum())
    assert evaluate_retention(inst, magnitude_mask(inst)).retained_small == 0
    bad = mask.copy()
    bad[0] = ~bad[0]
    assert evaluate_retention(inst, bad).feasible == (n == 2 * k)


def test_hessian_streaming_equals_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 1000)).astype(np.float32)
    full = hessian_from_inputs(x, damping=0.01)
    streamed = hessian_from_inputs((x[:, i:i + 128] for i in range(0, 1000, 128)), damping=0.01)
    assert np.allclose(full, streamed, rtol=1e-12)
    x64 = x.astype(np.float64)
    h = x64 @ x64.T / 1000
    assert np.allclose(full, h + 0.01 * np.mean(np.diag(h)) * np.eye(5))
    with pytest.raises(InvalidInstanceError, match="n = 5"):
        hessian_from_inputs(iter([x, x[:3]]))
    with pytest.raises(InvalidInstanceError, match="empty"):
        hessian_from_inputs(iter([]))


@given(layers(max_m=3, max_n=7))
def test_refit_never_worse_and_optimal(layer):
    w, h = layer
    m, n = w.shape
    k = max(1, n // 2)
    inst = RetentionInstance(w, h, k=k, damping=0.01, objective="masked")
    mask = magnitude_mask(inst)
    v, errors = refit(w, inst.hessian, mask)
    before = evaluate_retention(inst, mask).row_costs
    assert (v[~mask] == 0).all()
    assert (errors <= before + 1e-9 * (1 + before)).all()
    # optimality: the gradient of (w - v)^T H (w - v) vanishes on the kept entries
    grad = (w - v) @ inst.hessian
    assert np.allclose(grad[mask], 0.0, atol=1e-7 * (1 + np.abs(w).max() * np.abs(inst.hessian).max()))


def test_result_fields():
    inst = RetentionInstance([[1.0, 0.8, 0.7]], [[1.0, -0.9, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 1.0]], k=1, objective="masked")
    sol = rcprune.RetentionSolution([[False, False, True]])
    res = make_result(inst, sol, method="manual", runtime=0.0)
    assert isinstance(res, rcprune.SolveResult) and res.evaluation.cost == rcprune.evaluate(inst, sol).cost
    assert np.isclose(res.cost, 0.2) and np.isclose(res.evaluation.magnitude_cost, 1.13)
    assert res.evaluation.retained_small == 1 and res.status == "feasible" and res.feasible
    assert np.isclose(res.kept_sum, 0.7) and res.kept_count == 1
    assert refit_error(inst, sol) <= res.cost and np.isclose(res.evaluation.improvement, 1 - 0.2 / 1.13)
    summary = res.summary()
    assert (summary["cost"], summary["magnitude_cost"], summary["retained_small"], summary["improvement"],
            summary["status"]) == (res.cost, res.evaluation.magnitude_cost, 1, res.evaluation.improvement, "feasible")
    assert res.solution == sol and res.solution.mask.tolist() == [[False, False, True]]
    with pytest.raises(RuntimeError, match="lower bound"):
        make_result(inst, sol, method="x", runtime=0, lower_bound=5.0)
