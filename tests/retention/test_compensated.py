"""The compensated objective: every incremental quantity of RowSupport against a recomputation from the
definition, the batched refit against the reference, and the instance's objective option."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, RetentionInstance
from rcprune.compensation import compensated_refit
from rcprune.retention.compensated import RowSupport, row_errors_reference, swap_deltas_reference
from rcprune.retention.compensated_kernels import local_state, support_error, swap_row, tabu_rows

from tests.retention.bruteforce import refit_error
from tests.retention.strategies import layers


@st.composite
def rows(draw, max_n=7):
    w, h = draw(layers(max_m=1, max_n=max_n, min_n=2))
    h = h + 0.05 * max(float(np.mean(np.diag(h))), 1e-3) * np.eye(h.shape[0])   # positive definite
    keep = np.array(draw(st.lists(st.booleans(), min_size=w.shape[1], max_size=w.shape[1])))
    return w[0], h, keep


def close(a, b, scale):
    return np.allclose(a, b, rtol=1e-7, atol=1e-9 * (1.0 + scale))


@given(rows())
def test_state_matches_the_definition(row):
    w, h, keep = row
    r = RowSupport(w, h, keep)
    scale = float(w @ h @ w)
    assert close(r.error, refit_error(w, h, np.flatnonzero(keep)), scale)
    assert close(r.error, row_errors_reference(w[None], h, keep[None])[0], scale)
    assert np.all(r.refit[~keep] == 0) and close(r.residual, np.where(keep, 0.0, h @ (w - r.refit)), scale)


@given(rows())
def test_removal_addition_and_swap_deltas_are_exact(row):
    w, h, keep = row
    r = RowSupport(w, h, keep)
    scale = float(w @ h @ w)
    for p, d in zip(r.kept, r.removal_deltas()):
        assert close(d, refit_error(w, h, [j for j in r.kept if j != p]) - r.error, scale)
    for q, d in zip(r.pruned, r.addition_deltas()):
        assert close(d, refit_error(w, h, list(r.kept) + [q]) - r.error, scale)
    deltas, kept, pruned = r.swap_deltas()
    assert list(kept) == list(np.flatnonzero(keep)) and list(pruned) == list(np.flatnonzero(~keep))
    assert close(deltas, swap_deltas_reference(w, h, keep), scale)


@given(rows(), st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_updates_keep_the_state_exact(row, picks):
    w, h, keep = row
    r = RowSupport(w, h, keep)
    scale = float(w @ h @ w)
    for pick in picks:
        if r.kept.size and (pick % 2 or r.kept.size == w.size):
            r.remove(int(r.kept[pick % r.kept.size]))
        elif r.kept.size < w.size:
            r.add(int(r.pruned[pick % r.pruned.size]))
        fresh = RowSupport(w, h, r.mask)
        assert close(r.error, fresh.error, scale) and close(r.refit, fresh.refit, scale)
        assert close(r.inverse, np.linalg.inv(h[np.ix_(r.kept, r.kept)]), np.abs(r.inverse).max(initial=1.0))


@given(layers(max_m=4, max_n=7), st.integers(0, 2**32 - 1))
def test_batched_refit_matches_the_reference(layer, seed):
    w, h = layer
    h = h + 0.05 * np.eye(h.shape[0])
    rng = np.random.default_rng(seed)
    mask = rng.random(w.shape) < 0.5
    mask[-1] = mask[0]          # two rows sharing a mask share one factorization
    refit, errors = compensated_refit(w, h, mask)
    assert np.allclose(errors, row_errors_reference(w, h, mask), rtol=1e-7, atol=1e-9)
    assert np.all(refit[~mask] == 0)
    assert np.allclose(errors, [refit_error(w[i], h, np.flatnonzero(mask[i])) for i in range(w.shape[0])],
                       rtol=1e-7, atol=1e-9)


def test_instance_objective_and_default_damping():
    w, h = np.array([[1.0, 0.8, 0.7]]), np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    comp, masked = RetentionInstance(w, h, k=2), RetentionInstance(w, h, k=2, objective="masked")
    assert comp.objective == "compensated" and comp.damping == 0.01 and masked.damping == 0.0
    keep = np.array([[True, False, True]])
    ev = rcprune.evaluate(comp, keep)
    assert ev.cost == pytest.approx(refit_error(w[0], comp.hessian, [0, 2]))
    assert ev.cost < rcprune.evaluate(masked, keep).cost        # the refit only lowers the error
    assert np.allclose(ev.weights, compensated_refit(w, comp.hessian, keep)[0]) and ev.weights[0, 1] == 0
    assert rcprune.evaluate(masked, keep).weights is None
    assert comp.magnitude_cost == pytest.approx(rcprune.evaluate(comp, [[True, True, False]]).cost)


def test_bad_objective_and_singular_hessian_are_named():
    with pytest.raises(InvalidInstanceError, match="objective must be one of"):
        RetentionInstance(np.ones((1, 2)), np.eye(2), k=1, objective="refit")
    singular = np.ones((2, 2))
    with pytest.raises(InvalidInstanceError, match="positive definite.*damping"):
        RetentionInstance(np.ones((1, 2)), singular, k=1, damping=0)
    assert RetentionInstance(np.ones((1, 2)), singular, k=1).damping == 0.01     # damped: accepted
    assert RetentionInstance(np.ones((1, 2)), singular, k=1, objective="masked", damping=0).k == 1


def test_methods_refuse_the_other_objective_naming_the_right_ones():
    comp = RetentionInstance(np.ones((1, 3)), np.eye(3), k=1)
    masked = RetentionInstance(np.ones((1, 3)), np.eye(3), k=1, objective="masked")
    with pytest.raises(InvalidInstanceError, match="masked objective.*methods for it: magnitude, diagonal, obc"):
        rcprune.solve(comp, method="retention-greedy")
    with pytest.raises(InvalidInstanceError, match="compensated objective.*retention-greedy"):
        rcprune.solve(masked, method="obc")
    assert rcprune.solve(comp).method == "compensated-tabu" and rcprune.solve(masked).method == "retention-greedy"
    assert rcprune.method_names("retention", objective="masked")[-4:] == [
        "retention-greedy", "retention-annealing", "retention-genetic", "retention-exact"]
    with pytest.raises(InvalidInstanceError, match="does not select"):
        rcprune.method_names("matrix", objective="masked")


def _kernel_state(w, h, slots, cand):
    inv = np.linalg.inv(h[np.ix_(slots, slots)])
    return local_state(h @ w, float(w @ h @ w), h, slots, cand, inv), inv


@settings(deadline=None)
@given(rows(), st.lists(st.integers(0, 10**6), min_size=1, max_size=6), st.integers(0, 10**6))
def test_kernel_state_and_swaps_match_the_reference(row, picks, drop):
    w, h, keep = row
    if not 0 < keep.sum() < w.size:
        return
    slots = np.flatnonzero(keep)
    pruned0 = np.flatnonzero(~keep)
    cand = np.delete(pruned0, drop % pruned0.size) if drop % 2 and pruned0.size > 1 else pruned0
    (ht, mm, schur, v, g, error), inv = _kernel_state(w, h, slots, cand)
    glob = np.concatenate((slots, cand))
    lslots, lpruned = np.arange(slots.size), np.arange(slots.size, glob.size)
    assert np.array_equal(ht, h[np.ix_(glob, glob)])
    ref = RowSupport(w, h, keep)
    scale = float(w @ h @ w)
    for pick in picks:
        assert close(error, ref.error, scale) and close(v, ref.refit[glob], scale)
        assert close(g, ref.residual[glob], scale)
        kept = glob[lslots]
        order = np.argsort(kept)          # the kernel's slots vs the reference's kept order
        assert close(inv[np.ix_(order, order)], np.linalg.inv(h[np.ix_(kept[order], kept[order])]), 1.0)
        assert close(schur[lpruned], ref._cross(glob[lpruned])[1], scale)
        j, b = pick % lslots.size, pick % lpruned.size
        p, q = int(glob[lslots[j]]), int(glob[lpruned[b]])
        deltas, kept_ref, pruned_ref = ref.swap_deltas()
        expected = deltas[list(kept_ref).index(p), list(pruned_ref).index(q)]
        local_p = lslots[j]
        swap_row(ht, lslots, inv, mm, schur, v, g, j, lpruned[b], np.empty((4, glob.size)))
        lpruned[b] = local_p
        error += expected
        ref.remove(p)
        ref.add(q)
        assert close(error, ref.error, scale)
    # after the last swap too: the kernel's state against the reference and M against its definition
    assert close(v, ref.refit[glob], scale) and close(g, ref.residual[glob], scale)
    assert close(mm, ht[:, lslots] @ inv, np.abs(mm).max(initial=1.0))
    kept = glob[lslots]
    order = np.argsort(kept)
    assert close(inv[np.ix_(order, order)], np.linalg.inv(h[np.ix_(kept[order], kept[order])]), 1.0)
    assert close(support_error(h @ w, scale, h, np.sort(kept)), ref.error, scale)


@settings(deadline=None)
@given(rows(max_n=8), st.integers(0, 5), st.integers(1, 8), st.integers(1, 5))
def test_tabu_kernel_keeps_the_best_visited_and_descent_ends_locally_optimal(row, tenure, candidates, rounds):
    w, h, keep = row
    errors, steps = np.zeros(1), np.zeros(1, dtype=np.int64)
    start = RowSupport(w, h, keep).error
    found = keep.copy()[None]
    b, energy = (h @ w)[None], np.array([float(w @ h @ w)])
    tabu_rows(b, energy, h, found, np.zeros(1, dtype=np.int64), 30, tenure, 4, np.full(1, 1e-12), candidates,
              rounds, errors, steps)
    assert found.sum() == keep.sum()
    assert close(errors[0], refit_error(w, h, np.flatnonzero(found[0])), float(w @ h @ w))
    assert errors[0] <= start + 1e-9 * (1 + start)
    if tenure == 0 and 0 < keep.sum() < w.size and steps[0] < 30:
        # locally optimal over the swaps that bring in one of the candidates the final state chooses:
        # the pruned q with the largest g_q^2 / H_qq, g = H (w - v) (all of them when they are few)
        support = RowSupport(w, h, found[0])
        deltas, kept, pruned = support.swap_deltas()
        score = support.residual[pruned] ** 2 / np.diag(h)[pruned]
        chosen = np.sort(np.argsort(-score, kind="stable")[:candidates])
        assert deltas[:, chosen].min() >= -1e-7 * (1 + errors[0])
