"""The network-level identities of proofs/compensated.md: the output error against the dense layer from
other inputs is the compensated objective of the dense layer refit to them, plus a constant; forced columns
partial out exactly."""
import numpy as np
import pytest

from rcprune.compensation import compensated_refit, dense_target, partial_out
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.solution import Solution


def _data(seed, n=6, m=4, samples=200):
    rng = np.random.default_rng(seed)
    xd = rng.normal(size=(samples, n)) @ rng.normal(size=(n, n))
    xp = xd * rng.uniform(0.2, 1.0, size=n) + 0.3 * rng.normal(size=(samples, n))   # "pruned" inputs
    w = rng.laplace(size=(m, n))
    return rng, xd, xp, w


@pytest.mark.parametrize("seed", range(5))
def test_dense_target_gives_the_output_error(seed):
    rng, xd, xp, w = _data(seed)
    y = xd @ w.T
    N = len(xd)
    H, B, e = xp.T @ xp / N, y.T @ xp / N, (y * y).mean(0)
    wt, hd = dense_target(B, H, w)
    assert np.array_equal(hd, H)
    rows, cols = rng.random(4) < 0.7, rng.random(6) < 0.6
    rows[0] = cols[0] = True
    v = np.zeros_like(w)
    v[np.ix_(rows, cols)] = rng.normal(size=(rows.sum(), cols.sum()))     # any weights on R x C
    direct = ((y - xp @ v.T) ** 2).sum(1).mean()
    const = float(e.sum() - np.einsum("ij,jk,ik->", wt, H, wt))
    assert direct == pytest.approx(const + np.einsum("ij,jk,ik->", wt - v, H, wt - v), rel=1e-9)
    # the least-squares weights on R x C are the compensated refit of (W~, H), its error the instance's cost
    ls = np.zeros_like(w)
    for i in np.flatnonzero(rows):
        ls[i, cols] = np.linalg.lstsq(xp[:, cols], y[:, i], rcond=None)[0]
    cost = CompensatedInstance(wt, H, budget=int(rows.sum() * cols.sum()), damping=0).evaluate(Solution(rows, cols))
    np.testing.assert_allclose(cost.weights, ls, atol=1e-8)
    assert ((y - xp @ ls.T) ** 2).sum(1).mean() == pytest.approx(const + cost.cost, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_partial_out_is_exact(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(100, 7)) @ rng.normal(size=(7, 7))
    H = x.T @ x / 100
    w = rng.laplace(size=(3, 7))
    fixed = rng.random(7) < 0.4
    fixed[0], fixed[-1] = True, False
    free = np.flatnonzero(~fixed)
    reduced = partial_out(H, fixed)
    for _ in range(5):
        s = rng.random(free.size) < 0.5
        full = fixed.copy()
        full[free[s]] = True
        _, errors = compensated_refit(w, H, np.tile(full, (3, 1)))
        _, reduced_errors = compensated_refit(w[:, free], reduced, np.tile(s, (3, 1)))
        np.testing.assert_allclose(errors, reduced_errors, rtol=1e-8, atol=1e-10)


def test_damped_dense_target_leans_towards_the_dense_weights():
    rng, xd, xp, w = _data(9)
    y = xd @ w.T
    H, B = xp.T @ xp / len(xp), y.T @ xp / len(xp)
    wt, hd = dense_target(B, H, w, damping=0.05)
    lam = 0.05 * np.mean(np.diag(H))
    np.testing.assert_allclose(hd, H + lam * np.eye(len(H)))
    v = rng.normal(size=w.shape)        # damped objective = output error + lam ||v - w||^2 + a constant
    def damped_error(v):
        return ((y - xp @ v.T) ** 2).sum(1).mean() + lam * ((v - w) ** 2).sum()
    def objective(v):
        return np.einsum("ij,jk,ik->", wt - v, hd, wt - v)
    assert damped_error(v) - objective(v) == pytest.approx(damped_error(w) - objective(w), rel=1e-9)
    same, _ = dense_target(w @ H, H, w, damping=0.05)      # x_p = x_d: the target is the layer itself
    np.testing.assert_allclose(same, w, atol=1e-10)
