"""Measures: spend tables, the spend kernel against them, budgets in spend units, files, and every
network method against brute force under MACs and latency-like tables."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkSolution, evaluate_network
from rcprune.network import kernels as nk
from rcprune.network import reference
from rcprune.network.builder import NetworkBuilder
from rcprune.network.generate import random_network
from rcprune.network.io import load_network, save_network
from rcprune.network.measure import Measure, SpendTable

from tests.network.bruteforce import bilinear, measured_brute_force
from tests.network.test_kernels import _load, _random_move, _random_state


def random_table(rng, rows: int, cols: int, overhead: float = 0.0) -> SpendTable:
    """A monotone table on random knots with a fixed cost once the layer is non-empty."""
    rk = np.unique(np.concatenate(([0, rows], rng.integers(1, rows + 1, size=2))))
    ck = np.unique(np.concatenate(([0, cols], rng.integers(1, cols + 1, size=2))))
    v = rng.random((rk.size, ck.size)) * np.outer(rk > 0, ck > 0)
    v = SpendTable.monotone(v) + overhead * np.outer(rk > 0, ck > 0)
    return SpendTable(rk, ck, v)


def random_measure(net, rng, coef: bool = True) -> Measure:
    tables = {li.name: random_table(rng, li.rows, li.cols, overhead=float(rng.random())) for li in net.layers}
    coefs = {li.name: float(rng.integers(0, 3)) for li in net.layers} if coef else None
    return Measure("latency", tables, coef=coefs, unit="ms", fixed=0.25)


def measured(seed: int, density: float | None = None, **kw):
    """A random small network under a random table measure, budget a share of its full spend."""
    rng = np.random.default_rng(seed)
    net = random_network(seed, **kw)
    m = random_measure(net, rng)
    probe = net.replace(measure=m, budget=None, density=1.0)
    share = density if density is not None else float(rng.uniform(0.2, 0.8))
    return net.replace(measure=m, budget=max(share * probe.full_spend.sum(), probe.min_spend.sum()) + 1e-9)


def definition_spend(measure: Measure):
    def spend(layer, r, c):
        t = measure.tables.get(layer)
        extra = bilinear(t.rows.tolist(), t.cols.tolist(), t.values.tolist(), r, c) if t is not None else 0.0
        return measure.coef.get(layer, 0.0) * r * c + extra
    return spend


# --- tables -------------------------------------------------------------------------------------------

def test_table_interpolates_bilinearly_and_is_exact_at_knots():
    t = SpendTable([0, 2, 5], [0, 1, 4], [[0, 0, 0], [0, 1.0, 2.0], [0, 3.0, 7.0]])
    for i, r in enumerate(t.rows):
        for j, c in enumerate(t.cols):
            assert float(t(r, c)) == t.values[i, j]
    assert float(t(3, 2)) == pytest.approx(bilinear([0, 2, 5], [0, 1, 4], t.values.tolist(), 3, 2))
    assert float(t(9, 9)) == 7.0  # clamped to the grid


@pytest.mark.parametrize("rows, cols, values, message", [
    ([0, 2], [0, 3], [[0, 0], [0, -1.0]], "non-negative"),
    ([0, 2], [0, 3], [[0, 0], [1.0, 1.0]], "0 at 0 rows"),
    ([0, 2, 4], [0, 3], [[0, 0], [0, 2.0], [0, 1.0]], "non-decreasing"),
    ([1, 2], [0, 3], [[0, 0], [0, 1.0]], "start at 0"),
    ([0, 2, 2], [0, 3], [[0, 0], [0, 1.0], [0, 1.0]], "increase strictly"),
    ([0, 2], [0, 3], [[0, 0, 0], [0, 1.0, 1.0]], "shape"),
    ([0, 2], [0, 3], [[0, 0], [0, np.nan]], "finite"),
    ([0, 1.5], [0, 3], [[0, 0], [0, 1.0]], "integers"),
])
def test_bad_tables_are_named(rows, cols, values, message):
    with pytest.raises(InvalidInstanceError, match=message):
        SpendTable(rows, cols, values)


def test_monotone_cleans_noisy_timings():
    v = SpendTable.monotone([[0, 0, 0], [0, 2.0, 1.5], [0, 1.0, 3.0]])
    assert np.array_equal(v, [[0, 0, 0], [0, 2.0, 2.0], [0, 2.0, 3.0]])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000))
def test_layer_spend_kernel_matches_the_table(seed):
    rng = np.random.default_rng(seed)
    net = random_network(seed, n_layers=3)
    m = random_measure(net, rng)
    inst = net.replace(measure=m, budget=None, density=1.0)
    spend = definition_spend(m)
    for l, li in enumerate(inst.layers):
        for r in range(li.rows + 1):
            for c in range(li.cols + 1):
                assert nk.layer_spend(inst.flat, l, r, c) == pytest.approx(spend(li.name, r, c), rel=1e-12, abs=1e-12)
                assert m.spend(li.name, r, c) == pytest.approx(spend(li.name, r, c), rel=1e-12, abs=1e-12)


# --- instances ----------------------------------------------------------------------------------------

def _conv_net(**kw):
    b = NetworkBuilder("macs")
    x = b.input("x", 2)
    h = b.layer("c1", np.arange(1.0, 25.0).reshape(3, 8), x, kernel=(2, 2), positions=9)
    b.layer("fc", np.ones((2, 3)), h, protected=True)
    return b.build(**kw)


def test_macs_count_output_positions():
    net = _conv_net(measure="macs", density=0.5)
    assert net.full_spend.tolist() == [9.0 * 24, 6.0]
    assert net.budget == pytest.approx(0.5 * (9 * 24 + 6))
    ev = evaluate_network(net, NetworkSolution({"c1": ([1, 1, 0], [1] * 4 + [0] * 4), "fc": ([1, 1], [1, 1, 1])}))
    # channel 2 died, so fc reads 2 of its 3 inputs
    assert ev.spend == 9 * 2 * 4 + 2 * 2 and ev.feasible and ev.summary()["spend"] == ev.spend
    over = evaluate_network(net, NetworkSolution.full(net))
    assert not over.feasible and over.violations == ("total macs 222 MACs exceeds the budget 111",)


def test_weights_measure_is_the_count_and_stays_an_integer_budget():
    net = _conv_net(sparsity=0.5)
    assert net.measure.is_count and net.budget == 15 and isinstance(net.budget, int)
    assert evaluate_network(net, NetworkSolution.full(net)).spend == 30


def test_budget_below_the_least_spend_names_the_limit():
    with pytest.raises(InvalidInstanceError, match=r"budget 1.5 MACs is below the least the network can spend, 2 "):
        _conv_net(measure="macs", budget=1.5)  # fc's two protected rows need a column each
    net = _conv_net(measure="macs", budget=1000, min_density=0.5)
    assert net.min_spend.tolist() == [9.0 * 12, 4.0]  # c1: 12 entries; fc: both rows, so 2 x 2 >= 3


@pytest.mark.parametrize("measure, message", [
    ("latency", "measured, not named"),
    ("flops", "must be 'weights', 'macs'"),
    (Measure("x", {"nope": SpendTable([0, 1], [0, 1], [[0, 0], [0, 1.0]])}), "unknown layer"),
    (Measure("x", {"c1": SpendTable([0, 2], [0, 8], [[0, 0], [0, 1.0]])}), "covers 2 x 8"),
])
def test_bad_measures_are_named(measure, message):
    with pytest.raises(InvalidInstanceError, match=message):
        _conv_net(measure=measure, density=0.5)


def test_bad_positions_are_named():
    b = NetworkBuilder()
    x = b.input("x", 1)
    b.layer("c", np.ones((1, 1)), x, positions=0)
    with pytest.raises(InvalidInstanceError, match="positions"):
        b.build(budget=1)


def test_measure_round_trips_through_files(tmp_path):
    net = measured(3, n_layers=3)
    path = save_network(net, tmp_path / "m.npz")
    back = load_network(path)
    assert back == net and back.measure == net.measure and back.budget == net.budget
    plain = random_network(3)
    assert load_network(save_network(plain, tmp_path / "p.npz")) == plain
    with np.load(tmp_path / "p.npz") as data:
        assert '"format": 1' in str(data["metadata"])


def test_measure_json_errors_are_named():
    with pytest.raises(InvalidInstanceError, match="measure description"):
        Measure.from_json([1, 2])
    with pytest.raises(InvalidInstanceError, match="malformed"):
        Measure.from_json({"name": "x", "tables": {"a": {"rows": [0, 1]}}})


# --- kernels and solvers ------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000))
def test_move_delta_prices_spend_like_the_evaluation(seed):
    net = measured(seed, n_layers=4, scores="laplace", residual=0.6)
    rng = np.random.default_rng(seed)
    st_ = _random_state(net, rng)
    sc = nk.new_scratch(net.flat)
    for _ in range(6):
        rows, cols = _random_move(net, st_, rng)
        if not rows and not cols:
            continue
        ref_delta, ref_spend, ref_feasible, r2, c2 = reference.move_delta_reference(net, st_.rows, st_.cols, rows, cols)
        _load(sc, rows, cols)
        delta, spend, feasible = nk.move_delta(net.flat, st_, sc)
        assert delta == pytest.approx(ref_delta, rel=1e-9, abs=1e-9)
        assert spend == pytest.approx(ref_spend, rel=1e-9, abs=1e-9)
        nk.apply_move(net.flat, st_, sc, spend)
        ev = evaluate_network(net, NetworkSolution.from_flat(net, st_.rows, st_.cols))
        assert st_.spend[0] == pytest.approx(ev.spend, rel=1e-9, abs=1e-9) and st_.count[0] == ev.kept_count


HEURISTICS = ("network-greedy", "network-allocation", "network-annealing")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 100_000))
def test_methods_respect_a_table_budget_and_never_beat_brute_force(seed):
    net = measured(seed, n_layers=3, max_channels=3, max_block=2)
    opt = measured_brute_force(net, definition_spend(net.measure))
    for method in HEURISTICS:
        res = rcprune.solve(net, method=method, seed=seed, moves=3000) if method == "network-annealing" \
            else rcprune.solve(net, method=method, seed=seed)
        assert res.feasible, (method, res.evaluation.violations)
        assert res.evaluation.spend <= net.budget * (1 + 1e-9)
        assert res.cost >= opt - 1e-9
    with pytest.raises(InvalidInstanceError, match="spend tables"):
        rcprune.solve(net, method="network-cpsat")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 100_000))
def test_bound_is_below_the_optimum_under_a_table(seed):
    net = measured(seed, n_layers=3, max_channels=3, max_block=2)
    opt = measured_brute_force(net, definition_spend(net.measure))
    res = rcprune.solve(net, method="network-greedy", bound=True)
    assert res.lower_bound <= opt + 1e-9 <= res.cost + 2e-9


def _macs_network(seed: int):
    rng = np.random.default_rng(seed)
    net = random_network(seed, n_layers=3, max_channels=3, max_block=2)
    b = {li.name: int(rng.integers(1, 5)) for li in net.layers}
    g = net.graph.copy()
    for name, p in b.items():
        g.nodes[name]["positions"] = p
    probe = net.replace(graph=g, measure="macs", budget=None, density=1.0)
    share = float(rng.uniform(0.2, 0.8))
    return net.replace(graph=g, measure="macs", budget=None,
                       density=max(share, probe.min_spend.sum() / probe.full_spend.sum()))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 100_000))
def test_cpsat_is_optimal_under_macs(seed):
    net = _macs_network(seed)
    opt = measured_brute_force(net, lambda layer, r, c: net.layer(layer).positions * r * c)
    res = rcprune.solve(net, method="network-cpsat", seed=0)
    assert res.status == "optimal" and res.cost == pytest.approx(opt, abs=1e-6)
    assert res.evaluation.spend <= net.budget
    for method in HEURISTICS:
        r = rcprune.solve(net, method=method, seed=seed)
        assert r.feasible and r.cost >= opt - 1e-9


def test_a_new_measure_keeps_the_budget_share():
    net = _conv_net(sparsity=0.5)                       # 15 of 30 entries
    macs = net.replace(measure="macs")
    assert macs.budget == pytest.approx(0.5 * macs.full_spend.sum())
    assert macs.replace(measure="weights").budget == 15
