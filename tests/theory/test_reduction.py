"""The reductions of proofs/np_completeness.md, checked by brute force on random small bipartite graphs.

Each test names the section and theorem it checks. Bicliques are found by brute force on the graph (written
here, from the definition); RC optima come from the independent oracle tests/matrix/bruteforce.py.
"""
from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.theory.reduction import (
    biadjacency, biclique_to_solution, graph_from_biadjacency, reduce_biclique, solution_to_biclique,
)
from tests.matrix.bruteforce import all_subsets, brute_force

FORMS = ("fixed-shape", "budget")


def bicliques(graph: nx.Graph, top: list, bottom: list, k: int) -> list[tuple[frozenset, frozenset]]:
    """Every K_{k,k} (X in top, Y in bottom), by trying all k-subsets of both sides."""
    found = []
    for x in itertools.combinations(top, k):
        for y in itertools.combinations(bottom, k):
            if all(graph.has_edge(u, w) for u in x for w in y):
                found.append((frozenset(x), frozenset(y)))
    return found


@st.composite
def bipartite_graphs(draw, max_side: int = 5, max_k: int = 3):
    """(graph, top nodes, k): random sides of 0..max_side nodes with hashable mixed labels, random edges,
    the side U given by the 'bipartite' attribute or by top_nodes; padded size max(|U|,k)+max(|W|,k) <= 10."""
    m, n = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    k = draw(st.integers(1, max(1, min(max_k, m + n))))
    adj = draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=m, max_size=m))
    if m >= k and n >= k and draw(st.booleans()):  # plant a K_{k,k} half of the time, so "yes" is common
        xs = draw(st.lists(st.integers(0, m - 1), min_size=k, max_size=k, unique=True))
        ys = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k, unique=True))
        for i in xs:
            for j in ys:
                adj[i][j] = True
    top = [f"u{i}" for i in range(m)]
    bottom = list(range(100, 100 + n))  # different label types on the two sides
    g = nx.Graph()
    order = draw(st.permutations(top + bottom))  # node order must not matter
    for v in order:
        g.add_node(v, bipartite=0 if v in top else 1)
    g.add_edges_from((top[i], bottom[j]) for i in range(m) for j in range(n) if adj[i][j])
    return g, top, k


def _certificates(red) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every feasible (R, C) meeting the threshold, as index arrays (exhaustive over all subset pairs)."""
    inst = red.instance
    br, bc = all_subsets(inst.m), all_subsets(inst.n)
    kept = br @ inst.scores @ bc.T
    r, c = br.sum(axis=1), bc.sum(axis=1)
    if inst.fixed_shape is not None:
        feasible = (r[:, None] == inst.fixed_shape[0]) & (c[None, :] == inst.fixed_shape[1])
    else:
        feasible = np.outer(r, c) <= inst.budget
    hits = np.argwhere(feasible & (kept >= red.kept_target))
    return [(np.flatnonzero(br[i]), np.flatnonzero(bc[j])) for i, j in hits]


@pytest.mark.parametrize("form", FORMS)
@given(case=bipartite_graphs())
def test_reduction_decides_balanced_biclique(form, case):
    """np_completeness.md, Theorem 1 (fixed-shape form) and Theorem 2 (budget form): G has K_{k,k} iff
    OPT <= threshold; OPT >= threshold always; certificates map both ways and round-trip."""
    graph, top, k = case
    red = reduce_biclique(graph, k, form=form)
    inst = red.instance
    assert set(red.top) == set(top) and set(red.bottom) == set(graph) - set(top)
    expected = bicliques(graph, list(red.top), list(red.bottom), k)
    opt, rows, cols = brute_force(inst.scores, budget=None if inst.fixed_shape else inst.budget,
                                  shape=inst.fixed_shape)
    assert opt >= red.threshold  # every solution keeps at most the target
    assert (opt <= red.threshold) == bool(expected)
    if expected:
        x, y = solution_to_biclique(red, rcprune.Solution(rows, cols))  # the oracle's optimum certifies one
        assert (x, y) in expected
        for x, y in expected:
            sol = biclique_to_solution(red, x, y)
            ev = rcprune.evaluate(inst, sol)
            assert ev.feasible and ev.cost == red.threshold
            assert solution_to_biclique(red, sol) == (x, y)
    else:
        with pytest.raises(rcprune.InvalidInstanceError, match="certifies no biclique"):
            solution_to_biclique(red, rcprune.Solution(rows, cols))


@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=30)
@given(case=bipartite_graphs(max_side=4, max_k=2))
def test_certificates_are_in_bijection_with_bicliques(form, case):
    """np_completeness.md, Theorems 1 and 2: the solutions meeting the threshold are exactly the images of the
    bicliques (budget form: R = C = X u Y), so psi is a bijection with inverse phi."""
    graph, _, k = case
    red = reduce_biclique(graph, k, form=form)
    expected = set(bicliques(graph, list(red.top), list(red.bottom), k))
    certs = _certificates(red)
    assert len(certs) == len(expected)
    seen = set()
    for rows, cols in certs:
        sol = rcprune.Solution.from_indices(red.instance.m, red.instance.n, rows, cols)
        if form == "budget":
            assert np.array_equal(rows, cols) and len(rows) == 2 * k  # Step 3: R = C, |R| = 2k
        pair = solution_to_biclique(red, sol)
        assert pair in expected
        assert biclique_to_solution(red, *pair) == sol
        seen.add(pair)
    assert seen == expected


def test_naive_budget_reduction_is_wrong_on_a_star():
    """np_completeness.md, "Why the budget form needs a gadget": S = A with K = k^2 reaches k^2 on K_{1,4}
    (an unbalanced all-ones 1 x 4 block) although there is no K_{2,2}; the gadget says no."""
    star = nx.star_graph(4)
    a, top, bottom = biadjacency(star, top_nodes=[0])
    assert a.shape == (1, 4) and not bicliques(star, top, bottom, 2)
    naive_opt, _, _ = brute_force(a, budget=4)
    assert naive_opt <= a.sum() - 4  # the naive threshold is met: a false "yes"
    red = reduce_biclique(star, 2, form="budget", top_nodes=[0])
    opt, _, _ = brute_force(red.instance.scores, budget=red.instance.budget)
    assert opt > red.threshold
    assert red.instance.m == red.instance.n == 2 + 4  # U padded to k = 2 vertices


def test_budget_gadget_values():
    """np_completeness.md, Budget form, construction: D = 4k^2 on the diagonal, A in the U' x W' block,
    K = 4k^2, kept target 2kD + k^2."""
    g = nx.complete_bipartite_graph(2, 3)
    red = reduce_biclique(g, 2, top_nodes=[0, 1])
    s = red.instance.scores
    assert np.array_equal(np.diag(s), np.full(5, 16.0))
    off = s - np.diag(np.diag(s))
    assert np.array_equal(off[:2, 2:], np.ones((2, 3))) and off.sum() == 6
    assert red.instance.budget == 16 and red.kept_target == 2 * 2 * 16 + 4
    assert red.threshold == s.sum() - red.kept_target
    assert red.instance.metadata["form"] == "budget" and red.instance.metadata["k"] == 2


def test_fixed_shape_pads_small_sides():
    """np_completeness.md, Padding: sides smaller than k get isolated vertices (zero rows/columns)."""
    g = nx.complete_bipartite_graph(1, 3)
    red = reduce_biclique(g, 2, form="fixed-shape", top_nodes=[0])
    assert red.instance.scores.shape == (2, 3) and red.instance.fixed_shape == (2, 2)
    assert red.instance.scores[1].sum() == 0
    opt, _, _ = brute_force(red.instance.scores, shape=(2, 2))
    assert opt > red.threshold


def test_networkx_random_bipartite_graphs():
    """np_completeness.md, Theorems 1 and 2 on networkx's own generator (bipartition from the attribute)."""
    for seed in range(12):
        g = nx.bipartite.random_graph(4, 4, 0.7, seed=seed)
        top = [v for v, d in g.nodes(data=True) if d["bipartite"] == 0]
        bottom = [v for v in g if v not in top]
        for k in (1, 2, 3):
            has = bool(bicliques(g, top, bottom, k))
            for form in FORMS:
                red = reduce_biclique(g, k, form=form)
                inst = red.instance
                opt, _, _ = brute_force(inst.scores, budget=None if inst.fixed_shape else inst.budget,
                                        shape=inst.fixed_shape)
                assert (opt <= red.threshold) == has, (seed, k, form)


def test_bipartition_sources():
    """The side U comes from top_nodes, else the 'bipartite' attribute, else the bipartition of a connected
    graph; all give the same matrix up to the choice of side."""
    g = nx.path_graph(4)  # 0-1-2-3: sides {0, 2}, {1, 3}
    a1, top1, _ = biadjacency(g, top_nodes=[0, 2])
    a2, top2, _ = biadjacency(g)
    assert top1 == [0, 2] and a1.tolist() == [[1, 0], [1, 1]]
    assert sorted(top2) in ([0, 2], [1, 3]) and a2.sum() == 3
    nx.set_node_attributes(g, {0: 1, 1: 0, 2: 1, 3: 0}, "bipartite")
    assert biadjacency(g)[1] == [1, 3]


def test_graph_from_biadjacency_round_trip():
    a = np.array([[1, 0, 1], [0, 0, 1]])
    g = graph_from_biadjacency(a)
    back, top, bottom = biadjacency(g)
    assert np.array_equal(back, a) and top == [("u", 0), ("u", 1)] and len(bottom) == 3
    with pytest.raises(rcprune.InvalidInstanceError, match="only 0 and 1"):
        graph_from_biadjacency([[0, 2]])


@pytest.mark.parametrize("graph, kwargs, match", [
    (nx.DiGraph([(0, 1)]), {}, "undirected"),
    (nx.cycle_graph(3), {}, "not bipartite"),
    (nx.path_graph(3), {"top_nodes": [0, 1]}, "same side"),
    (nx.Graph([(0, 1), (2, 3)]), {}, "ambiguous"),
    (nx.path_graph(3), {"top_nodes": [7]}, "not nodes"),
    ("not a graph", {}, "networkx graph"),
])
def test_invalid_graphs(graph, kwargs, match):
    with pytest.raises(rcprune.InvalidInstanceError, match=match):
        reduce_biclique(graph, 1, **kwargs)


@pytest.mark.parametrize("k", [0, -1, 5, 1.5, True, "2"])
def test_invalid_k(k):
    with pytest.raises(rcprune.InvalidInstanceError, match="k must"):
        reduce_biclique(nx.complete_bipartite_graph(2, 2), k)


def test_invalid_form_and_certificates():
    g = nx.complete_bipartite_graph(2, 2)
    g.remove_edge(1, 3)
    with pytest.raises(rcprune.InvalidInstanceError, match="form must be"):
        reduce_biclique(g, 1, form="shape")
    for form in FORMS:
        red = reduce_biclique(g, 2, form=form, top_nodes=[0, 1])
        with pytest.raises(rcprune.InvalidInstanceError, match="edge .* is missing"):
            biclique_to_solution(red, [0, 1], [2, 3])
        with pytest.raises(rcprune.InvalidInstanceError, match="2 nodes on each side"):
            biclique_to_solution(red, [0], [2, 3])
        with pytest.raises(rcprune.InvalidInstanceError, match="not on the expected side"):
            biclique_to_solution(red, [2, 3], [0, 1])
        full = rcprune.Solution(np.ones(red.instance.m, bool), np.ones(red.instance.n, bool))
        assert not red.is_certificate(full)  # infeasible (fixed shape) or short of the target (budget)
        with pytest.raises(rcprune.InvalidInstanceError, match="certifies no biclique"):
            solution_to_biclique(red, full)
