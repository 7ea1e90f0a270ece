"""Network kernels against their numpy references: state, move deltas (incl. self-consuming layers), apply."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from rcprune import NetworkSolution, evaluate_network
from rcprune.network.builder import NetworkBuilder
from rcprune.network import kernels as nk
from rcprune.network import reference
from rcprune.network.floor import channel_floor
from rcprune.network.generate import random_network, residual_network


def _random_state(net, rng, p=0.6):
    f = net.flat
    st_ = nk.new_state(f)
    st_.rows[:] = rng.random(st_.rows.shape[0]) < p
    st_.rows[f.fixed_row] = True
    st_.cols[:] = (rng.random(st_.cols.shape[0]) < p) | f.fixed_col
    nk.init_state(f, st_)
    return st_


def _check_state(net, st_):
    ref = reference.init_state_reference(net, st_.rows, st_.cols)
    assert np.array_equal(st_.cols, ref["cols"])
    np.testing.assert_allclose(st_.row_sums, ref["row_sums"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(st_.col_sums, ref["col_sums"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(st_.kept, ref["kept"], rtol=1e-9, atol=1e-9)
    assert np.array_equal(st_.n_rows, ref["n_rows"]) and np.array_equal(st_.n_cols, ref["n_cols"])
    assert np.array_equal((st_.alive > 0) | net.flat.chan_input, ref["alive"])
    assert st_.count[0] == ref["count"]


def _random_move(net, st_, rng):
    """A valid move: distinct non-fixed rows; column additions only where the channel lives after."""
    f = net.flat
    free = np.flatnonzero(~f.fixed_row)
    rows = rng.choice(free, size=min(len(free), int(rng.integers(0, 4))), replace=False) if len(free) else []
    alive = st_.alive.copy()
    for i in rows:
        alive[f.row_chan[i]] += -1 if st_.rows[i] else 1
    live = (alive > 0) | f.chan_input
    cand = [j for j in range(st_.cols.shape[0]) if st_.cols[j] or live[f.col_chan[j]]]
    cols = rng.choice(cand, size=min(len(cand), int(rng.integers(0, 4))), replace=False) if cand else []
    return [int(i) for i in rows], [int(j) for j in cols]


def _load(sc, rows, cols):
    sc.mv_rows[:len(rows)] = rows
    sc.mv_cols[:len(cols)] = cols
    sc.sizes[0], sc.sizes[1] = len(rows), len(cols)


@given(st.integers(0, 100_000))
def test_init_state_matches_reference(seed):
    net = random_network(seed, n_layers=4, scores="laplace")
    _check_state(net, _random_state(net, np.random.default_rng(seed)))


@given(st.integers(0, 100_000))
def test_move_delta_and_apply_match_reference(seed):
    net = random_network(seed, n_layers=4, scores="laplace", residual=0.6,
                         weighting=["none", "total", "mean"][seed % 3])
    if seed % 2:  # a channel floor: removing a fixed column is infeasible
        net = channel_floor(net.replace(budget=None, density=1.0), 0.4)
    rng = np.random.default_rng(seed)
    st_ = _random_state(net, rng)
    sc = nk.new_scratch(net.flat)
    before_feasible = evaluate_network(net, NetworkSolution.from_flat(net, st_.rows, st_.cols)).feasible
    for _ in range(6):
        rows, cols = _random_move(net, st_, rng)
        if not rows and not cols:
            continue
        ref_delta, ref_count, ref_feasible, r2, c2 = reference.move_delta_reference(net, st_.rows, st_.cols, rows, cols)
        _load(sc, rows, cols)
        delta, count, feasible = nk.move_delta(net.flat, st_, sc)
        assert delta == pytest.approx(ref_delta, rel=1e-9, abs=1e-9)
        assert count == ref_count
        if before_feasible:
            assert feasible == ref_feasible
        nk.apply_move(net.flat, st_, sc, count)
        assert np.array_equal(st_.rows, r2) and np.array_equal(st_.cols, c2)
        _check_state(net, st_)
        assert not sc.col_mark.any() and not sc.chan_delta.any() and not sc.sizes.any()
        before_feasible = ref_feasible


def test_self_consuming_layer_cross_terms():
    """y = x + conv(x): a row of conv and its own column block change in one move."""
    b = NetworkBuilder()
    x = b.input("x", 1)
    h = b.layer("stem", np.array([[1.0], [2.0]]), x)
    y = b.add(h, b.layer("conv", np.arange(1.0, 9.0).reshape(2, 4), h, kernel=(2, 1)))
    b.layer("fc", np.ones((1, 2)), y, protected=True)
    net = b.build(budget=12)
    f = net.flat
    st_ = nk.new_state(f)
    st_.rows[:] = True
    st_.cols[:] = True
    nk.init_state(f, st_)
    sc = nk.new_scratch(f)
    # kill channel 1: stem row 1 and conv row 1 at once -> conv loses row 1 and columns 2, 3
    rows = [int(f.row_off[0] + 1), int(f.row_off[1] + 1)]
    ref = reference.move_delta_reference(net, st_.rows, st_.cols, rows, [])
    _load(sc, rows, [])
    delta, count, feasible = nk.move_delta(f, st_, sc)
    assert delta == pytest.approx(ref[0]) and count == ref[1] == 1 + 2 + 1
    # conv keeps S[0, 0:2] = 1 + 2 only: its cost grows by 36 - 3 - 0 = 33, stem by 2, fc by 1
    assert delta == pytest.approx(2.0 + 33.0 + 1.0)
    nk.apply_move(f, st_, sc, count)
    _check_state(net, st_)


def test_feasibility_checks():
    net = residual_network(budget=12, scores="ones")
    f = net.flat
    st_ = nk.new_state(f)
    st_.rows[:] = True
    st_.cols[:] = False
    st_.cols[f.col_off[-2]:] = True  # fc keeps its columns: 2 x 2 entries
    nk.init_state(f, st_)
    sc = nk.new_scratch(f)
    fc_row = int(f.row_off[-2])
    _load(sc, [fc_row], [])
    assert not nk.move_delta(f, st_, sc)[2]  # a protected row
    nk.clear_move(sc)
    stem_cols = list(range(f.col_off[0], f.col_off[1]))
    _load(sc, [], stem_cols)  # 2 rows x 2 columns: 4 more entries, 8 <= 12
    assert nk.move_delta(f, st_, sc)[1:] == (8, True)
    nk.clear_move(sc)
    conv_a = list(range(f.col_off[1], f.col_off[2]))
    _load(sc, [], stem_cols + conv_a)  # + 2 x 4 = 16 > 12
    assert nk.move_delta(f, st_, sc)[1:] == (16, False)
    nk.clear_move(sc)
    fc_cols = list(range(f.col_off[-2], f.col_off[-1]))
    _load(sc, [], fc_cols)  # fc would keep no column: below its minimum
    assert not nk.move_delta(f, st_, sc)[2]
    nk.clear_move(sc)
    # a column added to a channel that the same move kills is refused
    st_.cols[:] = True
    st_.cols[f.col_off[1] + 0] = False  # conv_a column of channel 0
    nk.init_state(f, st_)
    kill0 = [int(f.row_off[0]), int(f.row_off[2])]  # stem row 0 and conv_b row 0
    _load(sc, kill0, [int(f.col_off[1])])
    assert not nk.move_delta(f, st_, sc)[2]
    nk.clear_move(sc)


def test_refresh_removes_drift():
    net = random_network(5, n_layers=4, scores="laplace")
    rng = np.random.default_rng(0)
    st_ = _random_state(net, rng)
    st_.row_sums[:] += 1.0
    st_.kept[:] -= 3.0
    nk.refresh_state(net.flat, st_)
    _check_state(net, st_)
