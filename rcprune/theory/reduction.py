"""Balanced Complete Bipartite Subgraph reduces to RC pruning, in both forms, with certificate maps.

A bipartite graph G = (U, W, E) contains K_{k,k} (Garey & Johnson GT24) iff the RC instance built here
has optimal pruned cost at most ``threshold``; feasible solutions meeting the threshold and bicliques map
onto each other in polynomial time. Proofs: ``proofs/np_completeness.md``.

>>> import networkx as nx
>>> g = nx.complete_bipartite_graph(2, 3)              # nodes 0, 1 | 2, 3, 4
>>> red = reduce_biclique(g, 2, form="fixed-shape", top_nodes=[0, 1])
>>> red.instance.fixed_shape, red.threshold
((2, 2), 2.0)
>>> sol = biclique_to_solution(red, [0, 1], [2, 4])
>>> solution_to_biclique(red, sol)
(frozenset({0, 1}), frozenset({2, 4}))
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Hashable, Iterable

import networkx as nx
import numpy as np

from rcprune.matrix.model import Instance, Solution, evaluate
from rcprune.validation import InvalidInstanceError, check_scores

__all__ = ["FORMS", "BicliqueReduction", "reduce_biclique", "biclique_to_solution", "solution_to_biclique",
           "biadjacency", "graph_from_biadjacency"]

FORMS = ("fixed-shape", "budget")


@dataclass(frozen=True)
class BicliqueReduction:
    """An RC instance and a cost threshold deciding whether a bipartite graph contains K_{k,k}.

    Attributes
    ----------
    instance : Instance
        The RC instance (its metadata repeats k, the form and the threshold).
    threshold : float
        G contains K_{k,k} iff the optimal pruned cost of ``instance`` is at most ``threshold``.
    kept_target : float
        ``instance.total - threshold``: equivalently, iff some feasible solution keeps this much.
    k : int
    form : str
        ``"fixed-shape"`` (shape (k, k)) or ``"budget"`` (budget 4 k^2).
    top, bottom : tuple
        The nodes of U (rows ``0..len(top)-1``) and of W, in matrix order. The fixed-shape matrix has
        columns ``0..len(bottom)-1`` for W; the budget matrix indexes U then W on both axes (W starts at
        ``rows_u``). Indices past the real nodes are isolated padding vertices.
    rows_u, cols_w : int
        Padded side sizes max(|U|, k) and max(|W|, k).
    """

    instance: Instance
    threshold: float
    kept_target: float
    k: int
    form: str
    top: tuple
    bottom: tuple
    rows_u: int
    cols_w: int

    def is_certificate(self, solution: Solution) -> bool:
        """True iff ``solution`` is feasible and its cost is at most ``threshold`` (exact: integer scores)."""
        ev = evaluate(self.instance, solution)
        return ev.feasible and ev.kept_sum >= self.kept_target

    def _w_offset(self) -> int:
        return self.rows_u if self.form == "budget" else 0


def _sides(graph, top_nodes) -> tuple[list, list]:
    """The bipartition (U, W) in ``graph.nodes`` order, checked to be one."""
    if not isinstance(graph, nx.Graph):
        raise InvalidInstanceError(f"graph must be a networkx graph, got {type(graph).__name__}")
    if graph.is_directed():
        raise InvalidInstanceError("graph must be undirected (a bipartite graph), got a directed graph")
    nodes = list(graph.nodes)
    if top_nodes is None:
        part = nx.get_node_attributes(graph, "bipartite")
        if nodes and len(part) == len(nodes):
            top_set = {v for v in nodes if part[v] == 0}
        else:
            try:
                top_set = set(nx.bipartite.sets(graph)[0]) if nodes else set()
            except nx.AmbiguousSolution:
                raise InvalidInstanceError(
                    "the bipartition of a disconnected graph is ambiguous: give top_nodes or set the node "
                    "attribute 'bipartite' (0 for U, 1 for W)") from None
            except nx.NetworkXError as exc:
                raise InvalidInstanceError(f"graph is not bipartite: {exc}") from None
    else:
        top_set = set(top_nodes)
        missing = [v for v in top_set if v not in graph]
        if missing:
            raise InvalidInstanceError(f"top_nodes {missing!r} are not nodes of the graph")
    top = [v for v in nodes if v in top_set]
    bottom = [v for v in nodes if v not in top_set]
    for u, w in graph.edges():
        if (u in top_set) == (w in top_set):
            raise InvalidInstanceError(f"edge ({u!r}, {w!r}) joins two nodes of the same side: not bipartite")
    return top, bottom


def biadjacency(graph: nx.Graph, top_nodes: Iterable[Hashable] | None = None) -> tuple[np.ndarray, list, list]:
    """The 0/1 biadjacency matrix A (|U| x |W|) of a bipartite graph and the node orders of its axes.

    ``top_nodes`` gives U; otherwise the node attribute ``bipartite`` (0 = U), otherwise the unique
    bipartition of a connected graph. Nodes keep ``graph.nodes`` order.

    >>> import networkx as nx
    >>> a, top, bottom = biadjacency(nx.path_graph(3), top_nodes=[1])
    >>> a.tolist(), top, bottom
    ([[1.0, 1.0]], [1], [0, 2])
    """
    top, bottom = _sides(graph, top_nodes)
    row = {v: i for i, v in enumerate(top)}
    col = {v: j for j, v in enumerate(bottom)}
    a = np.zeros((len(top), len(bottom)))
    for u, w in graph.edges():
        if u not in row:
            u, w = w, u
        a[row[u], col[w]] = 1.0
    return a, top, bottom


def graph_from_biadjacency(matrix) -> nx.Graph:
    """The bipartite graph of a 0/1 matrix: nodes ``("u", i)`` (bipartite=0) and ``("w", j)`` (bipartite=1).

    >>> sorted(graph_from_biadjacency([[1, 0], [1, 1]]).edges())
    [(('u', 0), ('w', 0)), (('u', 1), ('w', 0)), (('u', 1), ('w', 1))]
    """
    a = check_scores(matrix, "biadjacency matrix")
    if not np.isin(a, (0.0, 1.0)).all():
        raise InvalidInstanceError("biadjacency matrix must contain only 0 and 1")
    g = nx.Graph()
    g.add_nodes_from((("u", i) for i in range(a.shape[0])), bipartite=0)
    g.add_nodes_from((("w", j) for j in range(a.shape[1])), bipartite=1)
    g.add_edges_from((("u", int(i)), ("w", int(j))) for i, j in np.argwhere(a == 1.0))
    return g


def _check_k(k, n_nodes: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InvalidInstanceError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= max(1, n_nodes):
        raise InvalidInstanceError(
            f"k must satisfy 1 <= k <= |V| = {n_nodes} (a larger K_{{k,k}} cannot exist), got {k}")
    return k


def reduce_biclique(graph: nx.Graph, k: int, *, form: str = "budget",
                    top_nodes: Iterable[Hashable] | None = None) -> BicliqueReduction:
    """Map (G, k) to an RC instance and a threshold: G contains K_{k,k} iff OPT <= threshold.

    Parameters
    ----------
    graph : networkx.Graph
        Bipartite, sides U and W (see :func:`biadjacency` for how U is found).
    k : int
        1 <= k <= |V|.
    form : {"budget", "fixed-shape"}
        ``"fixed-shape"``: S = A padded with zero rows/columns to at least k x k, shape (k, k), threshold
        |E| - k^2. ``"budget"``: S is (N x N), N = max(|U|, k) + max(|W|, k), with D = 4 k^2 on the
        diagonal and S[u, w] = 1 for every edge (u in U, w in W), budget K = 4 k^2, threshold
        total - (2 k D + k^2). (S = A with budget k^2 would be wrong: an unbalanced all-ones block of
        area k^2, e.g. a star with k^2 leaves, would meet the threshold.)
    top_nodes : iterable, optional
        The side U.

    Returns
    -------
    BicliqueReduction

    Notes
    -----
    O(N^2) time and space with N <= 2 |V|; all scores are integers below 4 |V|^2 + 1.
    See ``proofs/np_completeness.md``, sections "Fixed-shape form" and "Budget form".

    >>> import networkx as nx
    >>> star = nx.star_graph(4)                          # K_{1,4}: area 4 = 2^2, but no K_{2,2}
    >>> red = reduce_biclique(star, 2, top_nodes=[0])
    >>> red.instance.budget, red.kept_target
    (16, 68.0)
    """
    if form not in FORMS:
        raise InvalidInstanceError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    a, top, bottom = biadjacency(graph, top_nodes)
    k = _check_k(k, len(top) + len(bottom))
    m, n = max(len(top), k), max(len(bottom), k)
    edges = float(a.sum())
    if form == "fixed-shape":
        scores = np.zeros((m, n))
        scores[: a.shape[0], : a.shape[1]] = a
        kept_target = float(k * k)
        budget: dict[str, Any] = {"shape": (k, k)}
    else:
        d = 4.0 * k * k
        scores = d * np.eye(m + n)
        scores[: a.shape[0], m: m + a.shape[1]] = a
        kept_target = 2.0 * k * d + k * k
        budget = {"budget": 4 * k * k}
    threshold = float(scores.sum()) - kept_target
    meta = {"source": "rcprune.theory.reduction", "problem": "balanced complete bipartite subgraph (GT24)",
            "form": form, "k": k, "threshold": threshold, "kept_target": kept_target, "edges": edges}
    inst = Instance(scores, name=f"biclique-{form}-k{k}", metadata=meta, **budget)
    return BicliqueReduction(inst, threshold, kept_target, k, form, tuple(top), tuple(bottom), m, n)


def biclique_to_solution(reduction: BicliqueReduction, top: Iterable[Hashable],
                         bottom: Iterable[Hashable]) -> Solution:
    """The solution certifying a K_{k,k} with sides ``top`` (in U) and ``bottom`` (in W).

    Fixed-shape: rows ``top``, columns ``bottom``. Budget: rows = columns = ``top`` and ``bottom``.
    Its cost is at most ``reduction.threshold`` (``proofs/np_completeness.md``). Raises
    :class:`InvalidInstanceError` if the sets are not the two sides of a K_{k,k} of the graph.
    """
    x, y = list(dict.fromkeys(top)), list(dict.fromkeys(bottom))
    k = reduction.k
    if len(x) != k or len(y) != k:
        raise InvalidInstanceError(f"a K_{{{k},{k}}} needs {k} nodes on each side, got {len(x)} and {len(y)}")
    row = {v: i for i, v in enumerate(reduction.top)}
    col = {v: j for j, v in enumerate(reduction.bottom)}
    bad = [v for v in x if v not in row] + [v for v in y if v not in col]
    if bad:
        raise InvalidInstanceError(f"nodes {bad!r} are not on the expected side (top in U, bottom in W)")
    rows = np.array([row[v] for v in x], dtype=np.int64)
    cols = np.array([col[v] for v in y], dtype=np.int64) + reduction._w_offset()
    scores = reduction.instance.scores
    missing = [(x[a], y[b]) for a, b in np.argwhere(scores[np.ix_(rows, cols)] != 1.0)]
    if missing:
        raise InvalidInstanceError(f"not a biclique: edge {missing[0]!r} is missing")
    m, n = reduction.instance.m, reduction.instance.n
    if reduction.form == "fixed-shape":
        return Solution.from_indices(m, n, rows, cols)
    both = np.concatenate([rows, cols])
    return Solution.from_indices(m, n, both, both)


def solution_to_biclique(reduction: BicliqueReduction, solution: Solution) -> tuple[frozenset, frozenset]:
    """The K_{k,k} (sides in U, in W) read off a solution whose cost is at most the threshold.

    Fixed-shape: the kept rows and columns. Budget: the kept rows in U and the kept columns in W (the
    proof shows rows = columns there). Raises :class:`InvalidInstanceError` if ``solution`` is infeasible
    or misses the threshold (then it certifies nothing).
    """
    if not reduction.is_certificate(solution):
        raise InvalidInstanceError(
            f"solution is infeasible or keeps less than {reduction.kept_target}: it certifies no biclique")
    off = reduction._w_offset()
    rows = solution.kept_rows
    cols = solution.kept_cols - off
    x = frozenset(reduction.top[i] for i in rows if i < len(reduction.top))
    y = frozenset(reduction.bottom[j] for j in cols if 0 <= j < len(reduction.bottom))
    if len(x) != reduction.k or len(y) != reduction.k:  # impossible by the proof; never return a wrong answer
        raise AssertionError(f"certificate gave sides of sizes {len(x)}, {len(y)} for k = {reduction.k}")
    return x, y
