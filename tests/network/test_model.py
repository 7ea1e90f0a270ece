"""The network model: coupling semantics on hand-built networks, validation errors, the builder."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, strategies as st

import rcprune
from rcprune import InvalidInstanceError, NetworkInstance, NetworkSolution, evaluate_network
from rcprune.network.builder import NetworkBuilder
from rcprune.network.generate import (chain_network, flatten_network_head, get_network, network_names,
                                      random_network, residual_network, resnet_network)

from tests.network.bruteforce import evaluate_by_definition, full_enumeration, network_brute_force


def _full(net):
    return {li.name: np.ones(li.rows, bool) for li in net.layers}, {li.name: np.ones(li.cols, bool) for li in net.layers}


def _sol(rows, cols):
    return NetworkSolution({n: (rows[n], cols[n]) for n in rows})


# --- chain of three convs ------------------------------------------------------------------------

def test_chain_dead_channel_prunes_consumer_columns():
    net = chain_network(budget=42, scores="ones")  # x(2) -> conv1(3) -> conv2(3) -> conv3(2), k=2
    rows, cols = _full(net)
    rows["conv1"][0] = False  # channel 0 of conv1:out dies
    ev = evaluate_network(net, _sol(rows, cols))
    assert ev.dead_channels == {"conv1:out": (0,)}
    c2 = ev.layer("conv2")
    assert (c2.n_rows, c2.n_cols, c2.forced_cols) == (3, 4, 2)  # its 2 columns of channel 0 are pruned
    assert c2.kept_count == 12 and c2.cost == 6.0                  # and charged in cost and budget
    c1 = ev.layer("conv1")
    assert (c1.kept_count, c1.cost) == (8, 4.0)
    assert ev.kept_count == 8 + 12 + 12 and ev.cost == pytest.approx(10.0)
    assert ev.feasible  # 32 <= 42


def test_chain_kept_columns_of_dead_channel_do_not_count():
    net = chain_network(budget=30, scores="ones")
    rows, cols = _full(net)
    rows["conv2"][:] = [True, False, False]
    ev = evaluate_network(net, _sol(rows, cols))
    # conv3 keeps all 6 columns in its mask but only channel 0's 2 columns are live: 2 x 2 entries
    assert ev.layer("conv3").kept_count == 4 and ev.layer("conv3").n_cols == 2
    assert ev.kept_count == 12 + 6 + 4 == 22 and ev.feasible
    eff = _sol(rows, cols).effective(net)
    assert eff["conv3"].cols.sum() == 2
    assert evaluate_network(net, eff) == ev


def test_protected_rows_and_minimum_column():
    net = chain_network(budget=42, scores="ones")
    rows, cols = _full(net)
    rows["conv3"][1] = False
    ev = evaluate_network(net, _sol(rows, cols))
    assert not ev.feasible and any("fixed row(s) pruned" in v for v in ev.violations)
    rows, cols = _full(net)
    cols["conv3"][:] = False  # protected outputs computed from nothing
    ev = evaluate_network(net, _sol(rows, cols))
    assert not ev.feasible and any("below its minimum 2" in v for v in ev.violations)
    assert list(net.min_counts) == [0, 0, 2]


def test_budget_accounting():
    net = chain_network(budget=20, scores="ones")
    rows, cols = _full(net)
    ev = evaluate_network(net, _sol(rows, cols))
    assert ev.kept_count == net.total_entries == 12 + 18 + 12
    assert not ev.feasible and ev.violations == ("total kept entries 42 exceed the budget 20",)
    assert ev.cost == 0.0 and ev.density == 1.0


# --- residual blocks -----------------------------------------------------------------------------

def test_residual_identity_channel_alive_through_other_producer():
    net = residual_network(budget=24, scores="ones")  # stem(2) + conv_b(2) -> one group, fc reads it
    assert net.group("stem:out").producers == ("stem", "conv_b")
    assert net.group("stem:out").consumers == (("conv_a", 0), ("fc", 0))
    rows, cols = _full(net)
    rows["conv_b"][0] = False  # the identity path keeps channel 0 alive
    ev = evaluate_network(net, _sol(rows, cols))
    assert ev.dead_channels == {} and ev.layer("fc").n_cols == 2
    assert ev.layer("conv_b").cost == 4.0
    rows["stem"][0] = False  # now no producer keeps it
    ev = evaluate_network(net, _sol(rows, cols))
    assert ev.dead_channels == {"stem:out": (0,)}
    assert ev.layer("fc").n_cols == 1 and ev.layer("conv_a").n_cols == 2  # 2 of conv_a's 4 columns forced
    assert ev.layer("conv_a").forced_cols == 2


def test_residual_downsample_group():
    net = residual_network(budget=40, downsample=True, scores="ones")
    g = net.group("conv_b:out")
    assert g.producers == ("conv_b", "downsample") and g.consumers == (("fc", 0),)
    assert net.group("stem:out").consumers == (("conv_a", 0), ("downsample", 0))
    keep = {"conv_b:out": [0, 1, 3]}
    sol = NetworkSolution.from_channels(net, keep)
    ev = evaluate_network(net, sol)
    assert ev.dead_channels == {"conv_b:out": (2,)}
    assert sol["conv_b"].rows.tolist() == sol["downsample"].rows.tolist() == [True, True, False, True]
    assert ev.layer("fc").n_cols == 3
    # the dead channel's conv_b columns (it reads conv_a, not itself) are untouched
    assert ev.layer("conv_b").n_cols == 8


def test_self_consuming_layer():
    """y = x + conv(x): the conv produces and consumes the same group."""
    b = NetworkBuilder("selfloop")
    x = b.input("x", 2)
    h = b.layer("stem", np.ones((2, 2)), x)
    y = b.add(h, b.layer("conv", np.arange(8.0).reshape(2, 4), h, kernel=(2, 1)))
    b.layer("fc", np.ones((1, 2)), y, protected=True)
    net = b.build(budget=12)
    rows, cols = _full(net)
    rows["stem"][1] = rows["conv"][1] = False
    ev = evaluate_network(net, _sol(rows, cols))
    assert ev.dead_channels == {"stem:out": (1,)}
    assert ev.layer("conv").n_cols == 2 and ev.layer("conv").kept_sum == 0.0 + 1.0
    assert ev.layer("fc").kept_count == 1


# --- flatten into linear ------------------------------------------------------------------------

def test_flatten_index_mapping():
    net = flatten_network_head(budget=30, scores="ones", channels=3, spatial=(2, 2))
    fc = net.layer("fc")
    assert fc.block == 4 and fc.spatial == (2, 2)
    rows, cols = _full(net)
    rows["conv"][1] = False
    ev = evaluate_network(net, _sol(rows, cols))
    eff = _sol(rows, cols).effective(net)
    # feature c*H*W + h*W + w reads channel c: columns 4..7 are channel 1
    assert np.flatnonzero(~eff["fc"].cols).tolist() == [4, 5, 6, 7]
    assert ev.layer("fc").kept_count == 2 * 8


# --- channel pruning is expressible --------------------------------------------------------------

@given(st.integers(0, 10_000))
def test_channel_pruning_evaluates_as_its_definition(seed):
    net = random_network(seed, n_layers=3, scores="laplace")
    rng = np.random.default_rng(seed)
    keep = {g.name: rng.random(g.size) < 0.6 for g in net.groups if not g.input and not g.protected}
    sol = NetworkSolution.from_channels(net, keep)
    ev = evaluate_network(net, sol)
    rows = {n: sol[n].rows for n in sol}
    cols = {n: sol[n].cols for n in sol}
    cost, count, feasible = evaluate_by_definition(net, rows, cols)
    assert ev.cost == pytest.approx(cost) and ev.kept_count == count and ev.feasible == feasible
    # exactly the removed channels are dead, and only their consumer columns are pruned
    for g, mask in keep.items():
        if not mask.all():
            assert ev.dead_channels.get(g) == tuple(np.flatnonzero(~mask).tolist())
    for le, li in zip(ev.layers, net.layers):
        assert le.n_cols + le.forced_cols == li.cols


@given(st.integers(0, 10_000))
def test_evaluate_matches_definition_on_random_masks(seed):
    net = random_network(seed, n_layers=4, scores="laplace", weighting=["none", "total", "mean"][seed % 3])
    rng = np.random.default_rng(seed + 1)
    rows = {li.name: rng.random(li.rows) < 0.6 for li in net.layers}
    cols = {li.name: rng.random(li.cols) < 0.6 for li in net.layers}
    ev = evaluate_network(net, _sol(rows, cols))
    cost, count, feasible = evaluate_by_definition(net, rows, cols)
    assert ev.cost == pytest.approx(cost, rel=1e-12, abs=1e-12)
    assert ev.kept_count == count and ev.feasible == feasible
    assert sum(le.weighted_cost for le in ev.layers) == pytest.approx(ev.cost)


def test_brute_force_oracle_agrees_with_full_enumeration():
    for seed in range(12):
        net = random_network(seed, n_layers=2, max_channels=2, max_block=2)
        if sum(li.rows + li.cols for li in net.layers) > 14:
            continue
        cost, rows, cols = network_brute_force(net)
        assert cost == pytest.approx(full_enumeration(net))
        assert evaluate_by_definition(net, rows, cols)[0] == pytest.approx(cost)


# --- weighting ----------------------------------------------------------------------------------

def test_weightings():
    b = NetworkBuilder()
    x = b.input("x", 1)
    h = b.layer("a", [[1.0, 3.0]], x, kernel=(2, 1))
    b.layer("b", [[2.0], [0.0]], h)
    kw = dict(budget=2)
    assert b.build(weighting="none", **kw).weights.tolist() == [1.0, 1.0]
    assert b.build(weighting="total", **kw).weights.tolist() == [0.25, 0.5]
    assert b.build(weighting="mean", **kw).weights.tolist() == [0.5, 1.0]
    net = b.build(weighting={"a": 2.0, "b": 0.0}, **kw)
    sol = NetworkSolution({"a": ([1], [1, 0]), "b": ([0, 0], [1])})
    assert evaluate_network(net, sol).cost == 2.0 * 3.0 + 0.0
    assert evaluate_network(net, sol).pruned_cost == 5.0
    with pytest.raises(InvalidInstanceError, match="weighting must be one of"):
        b.build(weighting="max", **kw)
    with pytest.raises(InvalidInstanceError, match="missing \\['b'\\]"):
        b.build(weighting={"a": 1.0}, **kw)
    zero = NetworkBuilder()
    z = zero.input("x", 1)
    zero.layer("a", [[0.0]], z)
    assert zero.build(weighting="mean", budget=1).weights.tolist() == [0.0]


# --- validation ---------------------------------------------------------------------------------

def _graph():
    b = NetworkBuilder()
    x = b.input("x", 2)
    h = b.layer("a", np.ones((3, 2)), x)
    b.layer("b", np.ones((1, 3)), h, protected=True)
    return b.graph(), {"a": np.ones((3, 2)), "b": np.ones((1, 3))}


def test_validation_errors():
    g, s = _graph()
    NetworkInstance(g, s, budget=5)
    with pytest.raises(InvalidInstanceError, match="layer 'a' has 2 output rows but its output group 'a:out' has 3"):
        NetworkInstance(g, {**s, "a": np.ones((2, 2))}, budget=5)
    with pytest.raises(InvalidInstanceError, match="layer 'b' has 4 columns, not a multiple of its 3 input"):
        NetworkInstance(g, {**s, "b": np.ones((1, 4))}, budget=5)
    with pytest.raises(InvalidInstanceError, match="no score matrix"):
        NetworkInstance(g, {"a": s["a"]}, budget=5)
    with pytest.raises(InvalidInstanceError, match="unknown layer"):
        NetworkInstance(g, {**s, "c": np.ones((1, 1))}, budget=5)
    with pytest.raises(InvalidInstanceError, match="scores of layer 'a' must be non-negative"):
        NetworkInstance(g, {**s, "a": -np.ones((3, 2))}, budget=5)
    pb = NetworkBuilder()
    pb.layer("head", np.ones((3, 2)), pb.input("x", 2), protected=True)
    with pytest.raises(InvalidInstanceError, match="budget 2 is below the protected minimum 3"):
        pb.build(budget=2)
    with pytest.raises(InvalidInstanceError, match="layer budget 0 of 'b' is below its minimum 1"):
        NetworkInstance(g, s, layer_budgets={"b": 0})
    with pytest.raises(InvalidInstanceError, match="budget must be an integer between 1 and the network's 9"):
        NetworkInstance(g, s, budget=10)
    with pytest.raises(InvalidInstanceError, match="give a global budget"):
        NetworkInstance(g, s)
    with pytest.raises(InvalidInstanceError, match="unknown layer\\(s\\) \\['z'\\]"):
        NetworkInstance(g, s, layer_budgets={"z": 1})
    with pytest.raises(InvalidInstanceError, match="min_density"):
        NetworkInstance(g, s, budget=5, min_density=1.5)
    with pytest.raises(InvalidInstanceError, match="below the protected minimum 8"):
        NetworkInstance(g, s, budget=5, min_density=0.7)
    # a group referring to a missing channel range / missing producer / missing layer
    g2 = g.copy()
    g2.edges["a:out", "b"]["offset"] = 1
    with pytest.raises(InvalidInstanceError, match="input groups must tile"):
        NetworkInstance(g2, s, budget=5)
    g3 = g.copy()
    g3.remove_edge("a", "a:out")
    g3.add_node("other", kind="group", size=3)
    g3.add_edge("a", "other")
    with pytest.raises(InvalidInstanceError, match="group 'a:out' has no producer"):
        NetworkInstance(g3, s, budget=5)
    g4 = g.copy()
    g4.add_node("ghost", kind="group", size=2)
    g4.add_edge("ghost", "missing")
    with pytest.raises(InvalidInstanceError, match="graph node 'missing' has kind None"):
        NetworkInstance(g4, s, budget=5)
    g5 = g.copy()
    g5.add_edge("a", "b")
    with pytest.raises(InvalidInstanceError, match="joins two layers"):
        NetworkInstance(g5, s, budget=5)
    g6 = g.copy()
    g6.nodes["a"]["kernel"] = [3, 3]
    with pytest.raises(InvalidInstanceError, match="kernel \\[3, 3\\] has 9 positions"):
        NetworkInstance(g6, s, budget=5)
    with pytest.raises(InvalidInstanceError, match="networkx.DiGraph"):
        NetworkInstance(nx.Graph(g), s, budget=5)


def test_solution_validation():
    g, s = _graph()
    net = NetworkInstance(g, s, budget=5)
    with pytest.raises(InvalidInstanceError, match="missing \\['b'\\]"):
        evaluate_network(net, NetworkSolution({"a": ([1, 1, 1], [1, 1])}))
    with pytest.raises(InvalidInstanceError, match="layer 'a': masks have lengths \\(2, 2\\)"):
        evaluate_network(net, NetworkSolution({"a": ([1, 1], [1, 1]), "b": ([1], [1, 1, 1])}))
    with pytest.raises(InvalidInstanceError, match="layer 'a': row mask must be a boolean"):
        NetworkSolution({"a": ([0.5], [1])})
    with pytest.raises(InvalidInstanceError, match="group 'b:out' is protected"):
        NetworkSolution.from_channels(net, {"b:out": [False]})
    with pytest.raises(InvalidInstanceError, match="network input"):
        NetworkSolution.from_channels(net, {"x": [0]})


def test_builder_errors_and_merge_names():
    b = NetworkBuilder()
    x = b.input("x", 2)
    h = b.layer("a", np.ones((3, 2)), x)
    with pytest.raises(InvalidInstanceError, match="different sizes"):
        b.add(x, h)
    with pytest.raises(InvalidInstanceError, match="already used"):
        b.layer("a", np.ones((3, 2)), x)
    h2 = b.layer("b", np.ones((3, 3)), h)
    assert b.add(h2, h) == "a:out"  # the earliest-created group names the merge
    b.layer("c", np.ones((1, 6)), [h, h2])
    with pytest.raises(InvalidInstanceError, match="reads group 'a:out' twice"):
        b.graph()


def test_concatenated_inputs():
    b = NetworkBuilder()
    x = b.input("x", 1)
    h1 = b.layer("a", np.ones((2, 1)), x)
    h2 = b.layer("b", np.ones((3, 1)), x)
    b.layer("c", np.arange(10.0).reshape(2, 5), [h1, h2])
    net = b.build(budget=10)
    assert net.layer("c").inputs == (("a:out", 0), ("b:out", 2))
    rows, cols = _full(net)
    rows["b"][0] = False
    ev = evaluate_network(net, _sol(rows, cols))
    assert _sol(rows, cols).effective(net)["c"].cols.tolist() == [True, True, False, True, True]
    assert ev.layer("c").kept_sum == float(np.arange(10.0).reshape(2, 5)[:, [0, 1, 3, 4]].sum())


def test_instance_is_immutable_and_replace():
    net = chain_network(budget=20)
    with pytest.raises(AttributeError):
        net.budget = 3
    other = net.replace(sparsity=0.5, weighting="total")
    assert other.budget == 21 and other.weighting == "total" and other.layer_names == net.layer_names
    assert net.replace() == net and other != net
    assert not net.scores["conv1"].flags.writeable


def test_replace_shares_the_checked_scores():
    """A derived instance shares its source's read-only flat scores (no second check, no copy), also with
    a changed graph attribute; a new scores mapping is checked and copied."""
    net = chain_network(budget=20)
    graph = nx.DiGraph(net.graph)
    graph.nodes["conv2:out"]["protected"] = True
    for other in (net.replace(sparsity=0.5), net.replace(graph=graph)):
        assert other.flat_scores is net.flat_scores and np.array_equal(other.totals, net.totals)
    fresh = net.replace(scores={n: np.asarray(net.scores[n]) * 2 for n in net.layer_names})
    assert not np.shares_memory(fresh.flat_scores, net.flat_scores)
    assert np.allclose(fresh.totals, 2 * net.totals)
    bad = {n: np.asarray(net.scores[n]).copy() for n in net.layer_names}
    bad["conv2"][0, 0] = np.nan
    with pytest.raises(InvalidInstanceError, match="scores of layer 'conv2' contains 1 non-finite"):
        net.replace(scores=bad)


def test_user_scores_are_copied_once_and_left_as_they_were():
    """float32 scores are taken exactly; the user's arrays stay writable, and changing them later does not
    change the instance."""
    b = NetworkBuilder()
    x = b.input("x", 2)
    s = np.arange(1, 7, dtype=np.float32).reshape(3, 2) / 3
    want = s.astype(np.float64)
    b.layer("a", s, x)
    net = b.build(budget=4)
    assert s.flags.writeable and net.scores["a"].dtype == np.float64
    assert np.array_equal(net.scores["a"], want)
    s[:] = 0
    assert np.array_equal(net.scores["a"], want) and net.totals[0] == float(want.sum())


def test_library_networks():
    assert {"chain3", "residual-identity", "residual-downsample", "conv-flatten-linear",
            "resnet18-s90", "resnet50-s93"} <= set(network_names())
    for name in ("chain3", "residual-identity", "residual-downsample", "conv-flatten-linear"):
        net = get_network(name)
        assert net.name == name
        assert evaluate_network(net, NetworkSolution.full(net)).cost == 0.0
    with pytest.raises(InvalidInstanceError, match="unknown network instance"):
        get_network("resnet7")


def test_resnet_shapes():
    """Real torchvision channel counts and parameter totals (weights of convs and the fc)."""
    r18 = resnet_network(18, seed=0, width=1 / 8, num_classes=10)
    assert r18.layer("conv1").kernel == (7, 7) and r18.layer("conv1").cols == 3 * 49
    assert r18.group("conv1:out").producers == ("conv1", "layer1.0.conv2", "layer1.1.conv2")
    assert r18.group("layer2.0.conv2:out").producers == ("layer2.0.conv2", "layer2.0.downsample",
                                                         "layer2.1.conv2")
    assert r18.fixed_rows("fc").all() and not r18.fixed_rows("layer4.1.conv2").any()
    r50 = resnet_network(50, seed=0, width=1 / 16, num_classes=10)
    assert r50.n_layers == 54
    assert r50.group("conv1:out").consumers == (("layer1.0.conv1", 0), ("layer1.0.downsample", 0))
    assert r50.layer("layer4.2.conv3").rows == 2048 // 16
    # full width: the parameter counts of torchvision's resnet18 / resnet50 without biases and BN
    sizes18 = _param_count(18)
    sizes50 = _param_count(50)
    assert sizes18 == 11_678_912 and sizes50 == 25_502_912
    a = resnet_network(18, seed=3, width=1 / 16)
    b = resnet_network(18, seed=3, width=1 / 16)
    assert a == b


def _param_count(depth):
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    total, c_in = 3 * 64 * 49, 64
    for stage, nb in enumerate(blocks):
        planes = 64 * 2 ** stage
        for blk in range(nb):
            if depth == 18:
                total += c_in * planes * 9 + planes * planes * 9
                c_out = planes
            else:
                total += c_in * planes + planes * planes * 9 + planes * planes * 4
                c_out = planes * 4
            if blk == 0 and (stage > 0 or c_in != c_out):
                total += c_in * c_out
            c_in = c_out
    return total + c_in * 1000


def test_resnet_full_width_parameter_count():
    net = resnet_network(18, seed=0)
    assert net.total_entries == _param_count(18)
    assert net.budget == int(0.1 * net.total_entries)


def test_exports():
    assert rcprune.NetworkInstance is NetworkInstance
    assert rcprune.NetworkSolution is NetworkSolution
    assert rcprune.evaluate_network is evaluate_network
