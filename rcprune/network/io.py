"""Network instance and solution files: ``.npz`` (arrays) + JSON (graph as networkx node-link data).

An instance file holds ``scores`` (all layers' score matrices raveled and concatenated in layer order,
float64) and ``metadata``, a JSON string with the graph (``networkx.node_link_data``, edges under
``"links"``), the layer order, budgets, minimum density, weighting, the measure (format 2; a
weights-measure instance is written as format 1, which has none), name and user metadata. Shapes come
from the graph and are checked against the array. A solution file holds ``rows`` and ``cols`` (all
layers' masks concatenated in layer order) and JSON metadata with the layer order and mask lengths.
Files are written atomically and read with ``allow_pickle=False``; anything malformed raises
:class:`InvalidInstanceError` naming the file and the problem.

>>> import tempfile, pathlib
>>> from rcprune.network.generate import chain_network
>>> net = chain_network(budget=20)
>>> path = save_network(net, pathlib.Path(tempfile.mkdtemp()) / "chain.npz")
>>> load_network(path) == net
True
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from rcprune.files import atomic_write_bytes, npz_bytes, parse_metadata, read_npz
from rcprune.network.measure import Measure
from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.validation import InvalidInstanceError, check_format

__all__ = ["save_network", "load_network", "save_network_solution", "load_network_solution", "is_network_file"]

FORMAT_VERSION = 2   # version 2 added the measure; files of weights-measure instances are still written as 1
FORMAT_VERSIONS = (1, 2)
SOLUTION_FORMAT = 1
KIND = "rcprune-network"


def save_network(instance: NetworkInstance, path) -> Path:
    """Save a network instance atomically as ``.npz`` (flat scores + JSON graph and settings)."""
    graph = nx.node_link_data(nx.DiGraph(instance.graph), edges="links")
    weighting = instance.weighting if isinstance(instance.weighting, str) else dict(instance.weighting)
    counted = instance.measure.is_count
    meta = {
        "format": 1 if counted else FORMAT_VERSION, "kind": KIND, "name": instance.name, "graph": graph,
        "layer_order": list(instance.layer_names), "budget": instance.budget,
        "layer_budgets": dict(instance.layer_budgets) if instance.layer_budgets is not None else None,
        "min_density": instance.min_density, "weighting": weighting, "metadata": dict(instance.metadata),
    }
    if not counted:
        meta["measure"] = instance.measure.to_json()
    data = npz_bytes(scores=np.asarray(instance.flat_scores, np.float64), metadata=np.array(json.dumps(meta)))
    return atomic_write_bytes(path, data)


def is_network_file(path) -> bool:
    """Whether ``path`` is an ``.npz`` written by :func:`save_network` (False for anything else, corrupt
    files included: the single-matrix loader then reports the problem)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "metadata" not in data.files or "scores" not in data.files:
                return False
            return json.loads(str(data["metadata"])).get("kind") == KIND
    except Exception:  # unreadable, not a zip, bad JSON: not a network file
        return False


def _fail(path, msg: str) -> InvalidInstanceError:
    return InvalidInstanceError(f"corrupt network file {str(path)!r}: {msg}")


def load_network(path) -> NetworkInstance:
    """Load a network instance saved by :func:`save_network` (never unpickles)."""
    arrays = read_npz(path, ("scores", "metadata"), "network")
    meta = parse_metadata(arrays["metadata"], path, "network")
    if meta.get("kind") != KIND:
        raise _fail(path, f"not a network instance (kind {meta.get('kind')!r})")
    if meta.get("format") not in FORMAT_VERSIONS or isinstance(meta.get("format"), bool):
        check_format(meta, path, "network", FORMAT_VERSION)
    for key in ("graph", "layer_order", "name", "weighting"):
        if key not in meta:
            raise _fail(path, f"metadata lacks {key!r}")
    flat = arrays["scores"]
    if flat.ndim != 1 or flat.dtype.kind not in "iuf":
        raise _fail(path, f"scores must be a 1-D numeric array, got dtype {flat.dtype} and shape {flat.shape}")
    try:
        graph = nx.node_link_graph(meta["graph"], directed=True, multigraph=False, edges="links")
    except Exception as exc:  # networkx raises various errors on malformed node-link data
        raise _fail(path, f"the graph is not valid node-link data ({type(exc).__name__}: {exc})") from None
    order = meta["layer_order"]
    if not isinstance(order, list) or any(not isinstance(n, str) for n in order):
        raise _fail(path, "layer_order must be a list of layer names")
    for node, data in graph.nodes(data=True):
        size = data.get("size")
        if data.get("kind") == "group" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise _fail(path, f"group {node!r} has size {size!r}; sizes are positive integers")
    scores, pos = {}, 0
    for name in order:
        if name not in graph or graph.nodes[name].get("kind") != "layer":
            raise _fail(path, f"layer_order names {name!r}, which is not a layer of the graph")
        rows = graph.out_degree(name)
        outs = list(graph.successors(name))
        if rows != 1 or "size" not in graph.nodes[outs[0]]:
            raise _fail(path, f"layer {name!r} has no well-formed output group")
        m = graph.nodes[outs[0]]["size"]
        c_in = sum(graph.nodes[g].get("size", 0) for g in graph.predecessors(name))
        block = graph.nodes[name].get("block")
        if c_in == 0:
            raise _fail(path, f"layer {name!r} has no input channel group")
        if not all(isinstance(v, int) and v > 0 for v in (m, c_in, block)):
            raise _fail(path, f"layer {name!r}: rows, input channels and block must be positive integers")
        size = m * c_in * block
        if pos + size > flat.shape[0]:
            raise _fail(path, f"the scores array ({flat.shape[0]} values) is shorter than the layers' shapes need")
        scores[name] = flat[pos:pos + size].reshape(m, c_in * block)
        pos += size
    if pos != flat.shape[0]:
        raise _fail(path, f"the scores array has {flat.shape[0]} values but the layers' shapes need {pos}")
    try:
        measure = Measure.from_json(meta["measure"]) if "measure" in meta else "weights"
        return NetworkInstance(graph, scores, budget=meta.get("budget"), layer_budgets=meta.get("layer_budgets"),
                               min_density=meta.get("min_density", 0.0), weighting=meta["weighting"],
                               measure=measure, name=meta["name"], metadata=meta.get("metadata") or {})
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid network file {str(path)!r}: {exc}") from None


def save_network_solution(instance: NetworkInstance, solution: NetworkSolution, path,
                          metadata: dict[str, Any] | None = None) -> Path:
    """Save a network solution's masks atomically (layer order and lengths in the JSON metadata)."""
    rows, cols = solution.to_flat(instance)
    meta = {"format": SOLUTION_FORMAT, "kind": KIND + "-solution", "instance": instance.name,
            "layers": [[li.name, li.rows, li.cols] for li in instance.layers], "metadata": metadata or {}}
    return atomic_write_bytes(path, npz_bytes(rows=rows, cols=cols, metadata=np.array(json.dumps(meta))))


def load_network_solution(path) -> tuple[NetworkSolution, dict[str, Any]]:
    """Load ``(solution, metadata)`` saved by :func:`save_network_solution`."""
    arrays = read_npz(path, ("rows", "cols", "metadata"), "network solution")
    meta = parse_metadata(arrays["metadata"], path, "network solution")
    layers = meta.get("layers")
    if meta.get("kind") != KIND + "-solution" or not isinstance(layers, list):
        raise _fail(path, "not a network solution file")
    check_format(meta, path, "network solution", SOLUTION_FORMAT)
    rows, cols = arrays["rows"], arrays["cols"]
    try:
        if rows.ndim != 1 or cols.ndim != 1:
            raise ValueError("masks must be 1-D")
        if sum(int(m) for _, m, _ in layers) != rows.shape[0] or sum(int(n) for *_, n in layers) != cols.shape[0]:
            raise ValueError("mask lengths do not match the recorded layer shapes")
        out, r, c = {}, 0, 0
        for name, m, n in layers:
            out[str(name)] = (rows[r:r + int(m)], cols[c:c + int(n)])
            r, c = r + int(m), c + int(n)
        return NetworkSolution(out), meta.get("metadata") or {}
    except (ValueError, TypeError) as exc:
        raise _fail(path, str(exc)) from None
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid network solution file {str(path)!r}: {exc}") from None
