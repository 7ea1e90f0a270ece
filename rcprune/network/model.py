"""Whole-network RC pruning: layers coupled through channel groups, under one budget.

A network is a graph of *layers* (score matrices ``C_out x C_in*k``) and *channel groups* (tensor channels
that are the same channel through BatchNorm, activations, pooling, flatten and residual adds). Each layer's
output rows are the channels of one group; each of its input channels belongs to one group, and its column
block is the ``k`` columns of that channel (``kh*kw`` for a conv, ``H*W`` for flatten-into-linear).
A channel is *alive* iff some producer keeps its row (input channels are always alive); the columns of
dead channels are pruned in every consumer, and counted so in the cost and the budget.

>>> import numpy as np
>>> from rcprune.network.builder import NetworkBuilder
>>> b = NetworkBuilder("chain")
>>> x = b.input("x", 2)
>>> h = b.layer("conv", np.ones((3, 2 * 4)), x, kernel=(2, 2))
>>> y = b.layer("fc", np.ones((2, 3)), h, protected=True)
>>> net = b.build(budget=10)
>>> sol = NetworkSolution({"conv": ([1, 1, 0], [1] * 8), "fc": ([1, 1], [1, 1, 1])})
>>> ev = evaluate_network(net, sol)
>>> ev.kept_count, ev.cost, ev.dead_channels
(20, 10.0, {'conv:out': (2,)})
>>> ev.feasible, ev.violations
(False, ('total kept entries 20 exceed the budget 10',))
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import networkx as nx
import numpy as np

from rcprune.matrix import kernels
from rcprune.matrix.model import Solution
from rcprune.network.kernels import flatten_network, spend_limit
from rcprune.network.measure import Measure, measure_for
from rcprune.validation import (InvalidInstanceError, as_array, check_budget, check_fraction, check_mask,
                                check_metadata, check_name, check_scores)

__all__ = [
    "NetworkInstance", "NetworkSolution", "NetworkEvaluation", "LayerEvaluation",
    "LayerInfo", "GroupInfo", "evaluate_network", "WEIGHTINGS",
]

WEIGHTINGS = ("none", "total", "mean")


@dataclass(frozen=True)
class LayerInfo:
    """Static facts about one layer.

    ``inputs`` lists ``(group, offset)``: the group's channels are the layer's input channels
    ``offset .. offset + size - 1`` (several groups only for a concatenation). Column ``j`` is input
    channel ``j // block`` at position ``j % block`` (a conv's ``weight.view(C_out, -1)``; for
    flatten-into-linear, feature ``c*H*W + h*W + w`` is channel ``c`` at spatial position ``h*W + w``).
    """

    name: str
    index: int
    rows: int
    cols: int
    block: int
    in_channels: int
    output: str
    inputs: tuple[tuple[str, int], ...]
    kernel: tuple[int, ...] | None = None
    spatial: tuple[int, ...] | None = None
    positions: int = 1

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class GroupInfo:
    """Static facts about one channel group: its size, producers (layers whose rows are its channels)
    and consumers (layers that read it, with the input-channel offset there). ``floor`` lists the
    channels of a channel floor (:mod:`rcprune.network.floor`): they stay alive and every consumer
    reads them (their columns are fixed). ``fixed`` is what must stay alive: every channel of a
    ``protected`` group, else the floor."""

    name: str
    size: int
    input: bool
    protected: bool
    producers: tuple[str, ...]
    consumers: tuple[tuple[str, int], ...]
    members: tuple[str, ...] = ()
    floor: tuple[int, ...] = ()

    @property
    def fixed(self) -> tuple[int, ...]:
        """Channels that must stay alive (every producer keeps their rows)."""
        return tuple(range(self.size)) if self.protected else self.floor

    @property
    def fixed_mask(self) -> np.ndarray:
        """Per channel, whether it must stay alive."""
        return np.isin(np.arange(self.size), self.fixed)

    @property
    def floor_mask(self) -> np.ndarray:
        """Per channel, whether every consumer must read it."""
        return np.isin(np.arange(self.size), self.floor)


def _floor_channels(group: str, data: Mapping, size: int) -> tuple[int, ...]:
    """The group node's ``floor`` attribute: distinct channel indices in ``[0, size)``, sorted."""
    raw = data.get("floor")
    raw = () if raw is None else raw
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple, np.ndarray)) or any(
            isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral) or not 0 <= c < size for c in raw):
        raise InvalidInstanceError(f"group {group!r}: floor must be a list of channel indices in [0, {size}), "
                                   f"got {raw!r}")
    out = tuple(sorted(int(c) for c in raw))
    if len(set(out)) != len(out):
        raise InvalidInstanceError(f"group {group!r}: floor lists a channel twice: {list(raw)!r}")
    return out


def _check_graph(graph: nx.DiGraph, scores: Mapping[str, Any]) -> tuple[list[LayerInfo], dict[str, GroupInfo], dict]:
    """Validate the layer / group graph and the score matrices; return layers in order, groups, matrices."""
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise InvalidInstanceError(f"the network graph must be a networkx.DiGraph, got {type(graph).__name__}")
    layers, groups = [], []
    for node, data in graph.nodes(data=True):
        if not isinstance(node, str) or not node:
            raise InvalidInstanceError(f"graph node ids must be non-empty strings, got {node!r}")
        kind = data.get("kind")
        if kind == "layer":
            layers.append(node)
        elif kind == "group":
            groups.append(node)
        else:
            raise InvalidInstanceError(f"graph node {node!r} has kind {kind!r}; expected 'layer' or 'group'")
    if not layers:
        raise InvalidInstanceError("the network has no layers")
    for u, v in graph.edges():
        if graph.nodes[u]["kind"] == graph.nodes[v]["kind"]:
            raise InvalidInstanceError(f"edge {u!r} -> {v!r} joins two {graph.nodes[u]['kind']}s; edges join "
                                       "a layer to its output group or a group to a consuming layer")
    trusted = isinstance(scores, LayerScores) and scores.checked
    extra = set(scores) - set(layers)
    if extra:
        raise InvalidInstanceError(f"scores given for unknown layer(s) {sorted(extra)}")
    order = sorted(layers, key=lambda n: (graph.nodes[n].get("order", 0), layers.index(n)))

    group_info: dict[str, dict] = {}
    for g in groups:
        d = graph.nodes[g]
        size = d.get("size")
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise InvalidInstanceError(f"group {g!r}: size must be a positive integer, got {size!r}")
        group_info[g] = {"size": int(size), "input": bool(d.get("input", False)),
                         "protected": bool(d.get("protected", False)), "producers": [], "consumers": [],
                         "members": tuple(d.get("members", ()) or ()), "floor": _floor_channels(g, d, int(size))}

    infos, matrices = [], {}
    for index, name in enumerate(order):
        d = graph.nodes[name]
        if name not in scores:
            raise InvalidInstanceError(f"layer {name!r}: no score matrix given")
        # an instance's own scores were checked when it was built; anything else is checked here, without
        # a copy (the instance copies every matrix once, into its flat array)
        s = scores[name] if trusted else check_scores(scores[name], name=f"scores of layer {name!r}", copy=False)
        outs = list(graph.successors(name))
        if len(outs) != 1:
            raise InvalidInstanceError(f"layer {name!r} must produce exactly one channel group, it has {len(outs)}")
        out = outs[0]
        if group_info[out]["size"] != s.shape[0]:
            raise InvalidInstanceError(f"layer {name!r} has {s.shape[0]} output rows but its output group {out!r} "
                                       f"has {group_info[out]['size']} channels")
        ins = []
        for g in graph.predecessors(name):
            off = graph.edges[g, name].get("offset", 0)
            if isinstance(off, bool) or not isinstance(off, numbers.Integral) or off < 0:
                raise InvalidInstanceError(f"layer {name!r}: input group {g!r} has a bad offset {off!r}")
            ins.append((g, int(off)))
        if not ins:
            raise InvalidInstanceError(f"layer {name!r} has no input channel group")
        ins.sort(key=lambda t: t[1])
        pos = 0
        for g, off in ins:
            if off != pos:
                raise InvalidInstanceError(f"layer {name!r}: input groups must tile its input channels; group {g!r} "
                                           f"starts at channel {off}, expected {pos}")
            pos += group_info[g]["size"]
        c_in = pos
        if s.shape[1] % c_in:
            raise InvalidInstanceError(f"layer {name!r} has {s.shape[1]} columns, not a multiple of its "
                                       f"{c_in} input channels")
        block = s.shape[1] // c_in
        declared = d.get("block")
        if declared is not None and declared != block:
            raise InvalidInstanceError(f"layer {name!r} declares {declared} columns per input channel but its "
                                       f"{s.shape[1]} columns over {c_in} input channels give {block}")
        kernel = tuple(int(v) for v in d["kernel"]) if d.get("kernel") else None
        spatial = tuple(int(v) for v in d["spatial"]) if d.get("spatial") else None
        for label, shape in (("kernel", kernel), ("spatial", spatial)):
            if shape is not None and int(np.prod(shape)) != block:
                raise InvalidInstanceError(f"layer {name!r}: {label} {list(shape)} has {int(np.prod(shape))} "
                                           f"positions but each input channel has {block} columns")
        positions = d.get("positions", 1)
        if positions is None:
            positions = 1
        if isinstance(positions, bool) or not isinstance(positions, numbers.Integral) or positions < 1:
            raise InvalidInstanceError(f"layer {name!r}: positions (output positions per sample) must be a "
                                       f"positive integer, got {positions!r}")
        infos.append(LayerInfo(name=name, index=index, rows=s.shape[0], cols=s.shape[1], block=block,
                               in_channels=c_in, output=out, inputs=tuple(ins), kernel=kernel, spatial=spatial,
                               positions=int(positions)))
        group_info[out]["producers"].append(name)
        for g, off in ins:
            group_info[g]["consumers"].append((name, off))
        matrices[name] = s
    out_groups = {}
    for g, gi in group_info.items():
        if not gi["input"] and not gi["producers"]:
            raise InvalidInstanceError(f"group {g!r} has no producer layer and is not a network input: "
                                       "its channels could never be alive")
        if gi["input"] and gi["floor"]:
            raise InvalidInstanceError(f"group {g!r} is a network input (always alive): it cannot have a floor")
        out_groups[g] = GroupInfo(name=g, size=gi["size"], input=gi["input"], protected=gi["protected"],
                                  producers=tuple(gi["producers"]), consumers=tuple(gi["consumers"]),
                                  members=gi["members"], floor=gi["floor"])
    return infos, out_groups, matrices


class LayerScores(Mapping):
    """A read-only mapping layer name -> score matrix whose unknown keys are named errors."""

    def __init__(self, views: dict[str, np.ndarray], flat: np.ndarray | None = None,
                 offsets: np.ndarray | None = None, totals: np.ndarray | None = None):
        self._views = dict(views)
        # set by NetworkInstance: the checked, read-only array the views share (and each layer's sum), so
        # that a derived instance (replace) shares them instead of checking and copying every matrix again
        self.flat, self.offsets, self.totals = flat, offsets, totals

    @property
    def checked(self) -> bool:
        """Whether these are an instance's own (checked, read-only) scores."""
        return self.flat is not None

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self._views:
            raise InvalidInstanceError(f"unknown layer {layer!r}; layers: {', '.join(self._views)}")
        return self._views[layer]

    def __contains__(self, layer) -> bool:
        return layer in self._views

    def __iter__(self):
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)


def _check_weighting(weighting, layer_names: list[str]):
    if isinstance(weighting, str):
        if weighting not in WEIGHTINGS:
            raise InvalidInstanceError(f"weighting must be one of {', '.join(WEIGHTINGS)} or a mapping "
                                       f"layer -> weight, got {weighting!r}")
        return weighting
    if not isinstance(weighting, Mapping):
        raise InvalidInstanceError(f"weighting must be a string or a mapping layer -> weight, got {weighting!r}")
    missing = [n for n in layer_names if n not in weighting]
    extra = [k for k in weighting if k not in layer_names]
    if missing or extra:
        raise InvalidInstanceError(f"weighting mapping must give every layer a weight: missing {missing}, "
                                   f"unknown {extra}")
    out = {}
    for n in layer_names:
        w = weighting[n]
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (0 <= float(w) < math.inf):
            raise InvalidInstanceError(f"weight of layer {n!r} must be a finite non-negative number, got {w!r}")
        out[n] = float(w)
    return out


def _spend_budget(measure: Measure, full: float, budget, density, sparsity) -> float:
    """A global budget in the measure's units: ``budget`` as given, or a fraction of the full spend."""
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not (0 < float(budget) < math.inf):
            raise InvalidInstanceError(f"budget must be a positive number of {measure.unit}, got {budget!r}")
        return float(budget)
    if density is not None:
        return check_fraction(density, "density", allow_zero=False, allow_one=True) * full
    return (1.0 - check_fraction(sparsity, "sparsity", allow_zero=True, allow_one=False)) * full


class NetworkInstance:
    """An immutable whole-network RC pruning instance.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes are layers (``kind="layer"``; optional ``order``, ``kernel``, ``spatial``, ``block``) and
        channel groups (``kind="group"``, ``size``; optional ``input``, ``protected``, ``members``, ``floor``:
        channel indices that stay alive and are read by every consumer, see :mod:`rcprune.network.floor`). An edge
        layer -> group says the layer's rows are the group's channels (identity index map; exactly one per
        layer); an edge group -> layer (attribute ``offset``, default 0) says the group's channels are the
        layer's input channels ``offset ..``. :class:`rcprune.network.builder.NetworkBuilder` builds such graphs.
    scores : mapping layer -> matrix (C_out, C_in * block)
        Non-negative scores; stored once, as views into one flat float64 buffer.
    budget, density, sparsity : optional
        Global budget on the kept entries summed over all layers (one of them, or none).
    layer_budgets : mapping layer -> int, optional
        Per-layer maxima of kept entries (with or instead of the global budget).
    min_density : float
        Every layer keeps at least ``ceil(min_density * C_out * C_in * block)`` entries.
    measure : "weights", "macs" or Measure
        What the global budget counts (:mod:`rcprune.network.measure`): kept entries (default),
        multiply-adds per sample (layer node attribute ``positions``), or a measured latency table. With
        another measure than weights, ``budget`` is a number in its units and ``density`` / ``sparsity``
        are fractions of the full spend; per-layer budgets and minima stay in kept entries.
    weighting : "none", "total", "mean" or mapping layer -> weight
        ``w_l`` in the objective ``sum_l w_l * pruned_cost_l``: 1; ``1 / total_l``; ``1 / mean_l``
        (``mean_l = total_l / size_l``); a layer whose scores are all zero gets weight 0.
    name : str
    metadata : mapping, JSON-serializable

    Notes
    -----
    A group marked ``protected`` keeps every producer row (rows fixed); a group with ``floor`` channels
    keeps the producer rows of those and every consumer keeps their columns (columns fixed). A layer with fixed rows
    must keep at least one column (its outputs must be computed from something) and one with fixed
    columns at least one row, so its minimum kept count is ``max(fixed rows, 1) * max(fixed columns, 1)``
    when it has either. The budget must cover the sum of these minima.
    """

    kind = "network"

    def __init__(self, graph: nx.DiGraph, scores: Mapping[str, Any], *, budget=None, density=None,
                 sparsity=None, layer_budgets: Mapping[str, int] | None = None, min_density: float = 0.0,
                 weighting="none", measure="weights", name: str = "network",
                 metadata: Mapping[str, Any] | None = None):
        infos, groups, matrices = _check_graph(graph, scores)
        measure = measure_for(measure, infos)
        name = check_name(name)
        meta = check_metadata(metadata)
        names = [li.name for li in infos]
        sizes = np.array([li.size for li in infos], dtype=np.int64)
        if isinstance(scores, LayerScores) and scores.checked and list(scores) == names:
            flat, offsets, views, totals = scores.flat, scores.offsets, dict(scores.items()), scores.totals
        else:
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            flat = np.empty(int(offsets[-1]), dtype=np.float64)
            for li, a, b in zip(infos, offsets[:-1], offsets[1:]):
                flat[a:b] = matrices[li.name].ravel()
            flat.setflags(write=False)
            offsets.setflags(write=False)
            views = {li.name: flat[a:b].reshape(li.rows, li.cols) for li, a, b in zip(infos, offsets[:-1], offsets[1:])}
            totals = np.array([float(views[n].sum()) for n in names])
            totals.setflags(write=False)
        total_entries = int(offsets[-1])

        given = [k for k, v in (("budget", budget), ("density", density), ("sparsity", sparsity)) if v is not None]
        if len(given) > 1:
            raise InvalidInstanceError(f"give at most one of budget, density or sparsity; got {', '.join(given)}")
        k_global = None
        full_spend = np.array([measure.spend(li.name, li.rows, li.cols) for li in infos])
        if given and measure.is_count:
            if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Integral)
                                       or not 1 <= budget <= total_entries):
                raise InvalidInstanceError(f"budget must be an integer between 1 and the network's {total_entries} "
                                           f"entries, got {budget!r}")
            k_global, _ = check_budget(1, total_entries, budget, density=density, sparsity=sparsity)
        elif given:
            k_global = _spend_budget(measure, float(full_spend.sum()), budget, density, sparsity)
        lb = None
        if layer_budgets is not None:
            if not isinstance(layer_budgets, Mapping):
                raise InvalidInstanceError(f"layer_budgets must be a mapping layer -> kept entries, got {layer_budgets!r}")
            unknown = [k for k in layer_budgets if k not in views]
            if unknown:
                raise InvalidInstanceError(f"layer_budgets names unknown layer(s) {unknown}")
            lb = {}
            for n in names:
                if n in layer_budgets:
                    v = layer_budgets[n]
                    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v <= views[n].size:
                        raise InvalidInstanceError(f"layer budget of {n!r} must be an integer in [0, {views[n].size}], got {v!r}")
                    lb[n] = int(v)
        if k_global is None and lb is None:
            raise InvalidInstanceError("give a global budget (budget, density or sparsity) or layer_budgets")
        min_density = check_fraction(min_density, "min_density", allow_zero=True, allow_one=True)
        weighting = _check_weighting(weighting, names)

        fixed = {li.name: len(groups[li.output].fixed) for li in infos}
        fixed_cols = {li.name: li.block * sum(len(groups[g].floor) for g, _ in li.inputs) for li in infos}
        # fixed rows need a column each and fixed columns a row each: at least a fixed-rows x fixed-columns core
        min_counts = np.array([max(math.ceil(min_density * li.size - 1e-9),
                                   max(fixed[li.name], 1) * max(fixed_cols[li.name], 1)
                                   if fixed[li.name] or fixed_cols[li.name] else 0) for li in infos], dtype=np.int64)
        if lb is not None:
            for li, mc in zip(infos, min_counts):
                if li.name in lb and lb[li.name] < mc:
                    raise InvalidInstanceError(
                        f"layer budget {lb[li.name]} of {li.name!r} is below its minimum {mc} kept entries "
                        f"({'fixed rows and columns (protected channels, a channel floor) need their core' if mc and (fixed[li.name] or fixed_cols[li.name]) else 'min_density'})")
        min_spend = np.array([measure.least_spend(li.name, li.rows, li.cols, [int(mc)], min_rows=fixed[li.name],
                                                    min_cols=fixed_cols[li.name])[0]
                              for li, mc in zip(infos, min_counts)])
        if k_global is not None and measure.is_count and k_global < int(min_counts.sum()):
            raise InvalidInstanceError(
                f"budget {k_global} is below the protected minimum {int(min_counts.sum())} kept entries "
                "(protected rows need at least one column each, a channel floor its fixed rows and columns; "
                "min_density needs its share of every layer)")
        if k_global is not None and not measure.is_count and k_global < min_spend.sum() * (1 - 1e-12):
            raise InvalidInstanceError(
                f"budget {k_global:.6g} {measure.unit} is below the least the network can spend, "
                f"{float(min_spend.sum()):.6g} {measure.unit} (protected rows need at least one column each, a channel floor its fixed rows "
                f"and columns; "
                f"min_density needs its share of every layer); the best reachable budget is that minimum")

        if isinstance(weighting, str):
            if weighting == "none":
                w = np.ones(len(names))
            else:
                norm = totals if weighting == "total" else totals / sizes
                w = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0)
        else:
            w = np.array([weighting[n] for n in names])
        w.setflags(write=False)

        d = self.__dict__
        graph = nx.DiGraph(graph)
        for li in infos:  # normalized: every layer node records its block and position
            graph.nodes[li.name]["block"] = li.block
            graph.nodes[li.name]["order"] = li.index
        for gi in groups.values():  # a floor as a sorted list of ints (JSON-ready, equal after a round trip)
            if gi.floor:
                graph.nodes[gi.name]["floor"] = list(gi.floor)
            else:
                graph.nodes[gi.name].pop("floor", None)
        d["_graph"] = nx.freeze(graph)
        d["_layers"] = {li.name: li for li in infos}
        d["_groups"] = groups
        d["_order"] = tuple(names)
        d["_scores"] = LayerScores(views, flat, offsets, totals)
        d["_flat_scores"] = flat
        d["_score_offsets"] = offsets
        d["_budget"] = k_global
        d["_layer_budgets"] = MappingProxyType(lb) if lb is not None else None
        d["_min_density"] = min_density
        d["_weighting"] = weighting if isinstance(weighting, str) else MappingProxyType(weighting)
        d["_weights"] = w
        d["_totals"] = totals
        d["_sizes"] = sizes
        d["_min_counts"] = min_counts
        d["_measure"] = measure
        full_spend.setflags(write=False)
        min_spend.setflags(write=False)
        d["_full_spend"] = full_spend
        d["_min_spend"] = min_spend
        d["_name"] = name
        d["_metadata"] = MappingProxyType(meta)

    def __setattr__(self, key, value):
        raise AttributeError("NetworkInstance is immutable; use replace(...) to derive a new one")

    # --- structure --------------------------------------------------------------------------------
    @property
    def graph(self) -> nx.DiGraph:
        """The frozen layer / group graph."""
        return self._graph

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Layer names in order (the graph's ``order`` attribute, then insertion order)."""
        return self._order

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self._groups)

    @property
    def n_layers(self) -> int:
        return len(self._order)

    def layer(self, name: str) -> LayerInfo:
        if name not in self._layers:
            raise InvalidInstanceError(f"unknown layer {name!r}")
        return self._layers[name]

    def group(self, name: str) -> GroupInfo:
        if name not in self._groups:
            raise InvalidInstanceError(f"unknown channel group {name!r}")
        return self._groups[name]

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        return tuple(self._layers[n] for n in self._order)

    @property
    def groups(self) -> tuple[GroupInfo, ...]:
        return tuple(self._groups.values())

    @property
    def scores(self) -> Mapping[str, np.ndarray]:
        """Read-only score matrices by layer name (``net.scores["conv1"]``; an unknown name is an error)."""
        return self._scores

    @property
    def flat_scores(self) -> np.ndarray:
        """All score matrices raveled and concatenated in layer order (read-only)."""
        return self._flat_scores

    @property
    def score_offsets(self) -> np.ndarray:
        """``flat_scores[score_offsets[l]:score_offsets[l+1]]`` is layer l's matrix, raveled."""
        return self._score_offsets

    def fixed_rows(self, layer: str) -> np.ndarray:
        """Per row of ``layer``, whether it is fixed (its channel is protected or in its group's floor)."""
        return self._groups[self.layer(layer).output].fixed_mask

    def fixed_cols(self, layer: str) -> np.ndarray:
        """Per column of ``layer``, whether it is fixed: the columns of its input groups' floor channels
        (a channel floor is a channel-pruned core: its channels stay alive and every consumer reads them;
        protecting a group fixes its producers' rows, not its consumers' columns)."""
        li = self.layer(layer)
        return np.repeat(np.concatenate([self._groups[g].floor_mask for g, _ in li.inputs]), li.block)

    # --- objective and constraints ----------------------------------------------------------------
    @property
    def budget(self) -> int | float | None:
        """Global maximum of the measure's spend over all layers (kept entries, an int, for the
        weights measure), or None."""
        return self._budget

    @property
    def measure(self) -> Measure:
        """What the global budget counts (:mod:`rcprune.network.measure`)."""
        return self._measure

    @property
    def full_spend(self) -> np.ndarray:
        """Per layer, the measure's spend when everything is kept."""
        return self._full_spend

    @property
    def min_spend(self) -> np.ndarray:
        """Per layer, the least spend that meets its minimum count and fixed rows and columns."""
        return self._min_spend

    @property
    def layer_budgets(self) -> Mapping[str, int] | None:
        return self._layer_budgets

    def layer_budget_array(self) -> np.ndarray:
        """Per-layer maxima in layer order (a layer without one: its size)."""
        lb = self._layer_budgets or {}
        return np.array([lb.get(n, int(s)) for n, s in zip(self._order, self._sizes)], dtype=np.int64)

    @property
    def min_density(self) -> float:
        return self._min_density

    @property
    def min_counts(self) -> np.ndarray:
        """Minimum kept entries per layer: the min_density share, and ``max(fixed rows, 1) * max(fixed
        columns, 1)`` where either is fixed (a fixed row needs a column, a fixed column a row)."""
        return self._min_counts

    @property
    def weighting(self):
        return self._weighting

    @property
    def weights(self) -> np.ndarray:
        """``w_l`` per layer, in layer order."""
        return self._weights

    @property
    def totals(self) -> np.ndarray:
        """Sum of scores per layer."""
        return self._totals

    @property
    def sizes(self) -> np.ndarray:
        """Entries per layer."""
        return self._sizes

    @property
    def total_entries(self) -> int:
        return int(self._sizes.sum())

    @property
    def weighted_total(self) -> float:
        """The cost of pruning everything: ``sum_l w_l total_l``."""
        return float(self._weights @ self._totals)

    @property
    def effective_budget(self) -> int | float:
        """The global budget, or, when there is none, the sum of layer budgets (weights measure) or the
        full spend (other measures)."""
        if self._budget is not None:
            return self._budget
        if not self._measure.is_count:
            return float(self._full_spend.sum())
        return int(self.layer_budget_array().sum())

    @property
    def name(self) -> str:
        return self._name

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self._metadata

    @cached_property
    def flat(self):
        """The index arrays the network kernels run on (see :mod:`rcprune.network.kernels`)."""
        return flatten_network(self)

    def evaluate(self, solution: "NetworkSolution") -> "NetworkEvaluation":
        """What ``solution`` achieves here (see :func:`evaluate_network`)."""
        return evaluate_network(self, solution)

    def replace(self, **changes) -> "NetworkInstance":
        """A new instance with some fields changed; a budget keyword replaces the global budget. A new
        ``measure`` without one keeps the global budget's share of the full spend."""
        kw: dict[str, Any] = {"layer_budgets": dict(self._layer_budgets) if self._layer_budgets else None,
                              "min_density": self._min_density, "name": self._name, "measure": self._measure,
                              "metadata": dict(self._metadata),
                              "weighting": self._weighting if isinstance(self._weighting, str) else dict(self._weighting)}
        if not {"budget", "density", "sparsity"} & changes.keys():
            if "measure" in changes and self._budget is not None:  # the same share, in the new measure's units
                kw["density"] = min(self._budget / max(float(self._full_spend.sum()), 1e-300), 1.0)
            else:
                kw["budget"] = self._budget
        kw.update(changes)
        graph = kw.pop("graph", self._graph)
        scores = kw.pop("scores", self._scores)
        return NetworkInstance(nx.DiGraph(graph), scores, **kw)

    def __repr__(self) -> str:
        b = f"budget={self._budget}" if self._budget is not None else "layer budgets"
        return (f"NetworkInstance(name={self._name!r}, {self.n_layers} layers, {len(self._groups)} groups, "
                f"{self.total_entries} entries, {b}, weighting={self._weighting if isinstance(self._weighting, str) else 'custom'!r})")

    def __eq__(self, other) -> bool:
        if not isinstance(other, NetworkInstance):
            return NotImplemented
        from networkx.utils import graphs_equal

        lb = dict(self._layer_budgets) if self._layer_budgets else None
        olb = dict(other._layer_budgets) if other._layer_budgets else None
        return (self._order == other._order and self._budget == other._budget and lb == olb
                and self._min_density == other._min_density and np.array_equal(self._weights, other._weights)
                and self._measure == other._measure
                and self._name == other._name and dict(self._metadata) == dict(other._metadata)
                and graphs_equal(self._graph, other._graph)
                and np.array_equal(self._flat_scores, other._flat_scores))

    __hash__ = None  # type: ignore[assignment]


class NetworkSolution:
    """Kept rows and kept columns of every layer (a :class:`rcprune.Solution` per layer).

    The masks are the decisions; the columns of dead input channels are pruned whatever the column mask
    says (:meth:`effective` clears them).

    >>> sol = NetworkSolution({"a": ([1, 0], [1, 1, 0])})
    >>> sol["a"]
    Solution(rows=[0], cols=[0, 1])
    """

    __slots__ = ("_layers",)

    def __init__(self, layers: Mapping[str, Any]):
        if not isinstance(layers, Mapping):
            raise InvalidInstanceError(f"a NetworkSolution takes a mapping layer -> (rows, cols), got {type(layers).__name__}")
        out = {}
        for name, v in layers.items():
            if isinstance(v, Solution):
                out[name] = v
                continue
            try:
                rows, cols = v
            except (TypeError, ValueError):
                raise InvalidInstanceError(f"layer {name!r}: expected a Solution or a (rows, cols) pair of masks") from None
            try:
                out[name] = Solution(rows, cols)
            except InvalidInstanceError as exc:
                raise InvalidInstanceError(f"layer {name!r}: {exc}") from None
        object.__setattr__(self, "_layers", MappingProxyType(out))

    def __setattr__(self, key, value):
        raise AttributeError("NetworkSolution is immutable")

    def __getitem__(self, layer: str) -> Solution:
        return self._layers[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def items(self):
        return self._layers.items()

    @property
    def mask(self) -> dict[str, np.ndarray]:
        """Per layer, the (rows, cols) entry mask ``rows x cols`` of the decisions (dead channels' columns
        are pruned on top of it: see :meth:`effective`)."""
        return {name: s.mask for name, s in self._layers.items()}

    @classmethod
    def full(cls, instance: NetworkInstance) -> "NetworkSolution":
        """Keep every row and column."""
        return cls({li.name: (np.ones(li.rows, bool), np.ones(li.cols, bool)) for li in instance.layers})

    @classmethod
    def from_channels(cls, instance: NetworkInstance, keep: Mapping[str, Any]) -> "NetworkSolution":
        """Channel pruning: keep the channels ``keep[group]`` (a mask or indices; missing groups are kept
        whole). Producer rows follow their channel; all columns are kept, so the columns of removed
        channels are pruned in every consumer and nothing else is."""
        alive = {}
        for g, v in keep.items():
            gi = instance.group(g)
            arr = as_array(v, f"channels of group {g!r}")
            if arr.dtype == bool:
                alive[g] = check_mask(arr, gi.size, f"channel mask of group {g!r}")
            else:
                idx = arr.astype(np.int64).ravel()
                if idx.size and (idx.min() < 0 or idx.max() >= gi.size):
                    raise InvalidInstanceError(f"channel indices of group {g!r} must be in [0, {gi.size})")
                m = np.zeros(gi.size, bool)
                m[idx] = True
                alive[g] = m
            if gi.input and not alive[g].all():
                raise InvalidInstanceError(f"group {g!r} is a network input: its channels cannot be removed")
            if (gi.fixed_mask & ~alive[g]).any():
                raise InvalidInstanceError(f"group {g!r} is protected (or has a channel floor): its fixed channels "
                                           f"{list(gi.fixed)} cannot be removed")
        return cls({li.name: (alive.get(li.output, np.ones(li.rows, bool)), np.ones(li.cols, bool))
                    for li in instance.layers})

    @classmethod
    def from_flat(cls, instance: NetworkInstance, rows: np.ndarray, cols: np.ndarray) -> "NetworkSolution":
        """From the concatenated row and column masks of all layers (layer order)."""
        f = instance.flat
        return cls({n: (rows[f.row_off[l]:f.row_off[l + 1]], cols[f.col_off[l]:f.col_off[l + 1]])
                    for l, n in enumerate(instance.layer_names)})

    def to_flat(self, instance: NetworkInstance) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated (rows, cols) masks in the instance's layer order (writable copies)."""
        check_network_solution(instance, self)
        return (np.concatenate([self._layers[n].rows for n in instance.layer_names]),
                np.concatenate([self._layers[n].cols for n in instance.layer_names]))

    def effective(self, instance: NetworkInstance) -> "NetworkSolution":
        """The same solution with the columns of dead input channels cleared (same evaluation)."""
        alive = alive_channels(instance, self)
        out = {}
        for li in instance.layers:
            s = self._layers[li.name]
            out[li.name] = (s.rows, s.cols & _input_alive(li, alive))
        return NetworkSolution(out)

    def __eq__(self, other) -> bool:
        if not isinstance(other, NetworkSolution):
            return NotImplemented
        return dict(self._layers) == dict(other._layers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {s.shape[0]}x{s.shape[1]}" for n, s in self._layers.items())
        return f"NetworkSolution({{{parts}}})"


@dataclass(frozen=True)
class LayerEvaluation:
    """One layer's share: pruned cost (unweighted and weighted), kept sum, effective kept shape and count.

    ``n_cols`` counts effective columns (kept and with a live input channel); ``forced_cols`` counts the
    columns pruned because their input channel is dead.
    """

    name: str
    cost: float
    weighted_cost: float
    weight: float
    kept_sum: float
    kept_count: int
    n_rows: int
    n_cols: int
    forced_cols: int
    density: float
    size: int
    spend: float = 0.0


@dataclass(frozen=True)
class NetworkEvaluation:
    """What a network solution achieves: ``cost = sum_l w_l * pruned_cost_l`` and the rest."""

    cost: float
    pruned_cost: float
    kept_count: int
    budget: int | None
    density: float
    feasible: bool
    violations: tuple[str, ...]
    layers: tuple[LayerEvaluation, ...]
    dead_channels: dict = field(default_factory=dict)
    spend: float = 0.0
    measure: str = "weights"

    def layer(self, name: str) -> LayerEvaluation:
        for le in self.layers:
            if le.name == name:
                return le
        raise KeyError(name)

    def table(self) -> list[dict]:
        """Per-layer rows as dicts (for printing)."""
        return [dict(le.__dict__) for le in self.layers]

    @property
    def kept_sum(self) -> float:
        """Weighted kept importance, ``sum_l w_l kept_sum_l``."""
        return float(sum(le.weight * le.kept_sum for le in self.layers))

    def summary(self) -> dict:
        """The facts a result summary shows beside the common fields."""
        out = {"density": self.density, "dead_channels": sum(len(v) for v in self.dead_channels.values())}
        if self.measure != "weights":
            out |= {"measure": self.measure, "spend": self.spend}
        return out


def check_network_solution(instance: NetworkInstance, solution: NetworkSolution) -> None:
    """Raise unless ``solution`` has masks of the right lengths for exactly the instance's layers."""
    if not isinstance(solution, NetworkSolution):
        raise InvalidInstanceError(f"expected a rcprune.NetworkSolution, got {type(solution).__name__}")
    missing = [n for n in instance.layer_names if n not in solution]
    extra = [n for n in solution if n not in instance.layer_names]
    if missing or extra:
        raise InvalidInstanceError(f"solution layers do not match the network: missing {missing}, unknown {extra}")
    for li in instance.layers:
        s = solution[li.name]
        if s.rows.shape[0] != li.rows or s.cols.shape[0] != li.cols:
            raise InvalidInstanceError(f"layer {li.name!r}: masks have lengths ({s.rows.shape[0]}, {s.cols.shape[0]}) "
                                       f"but the layer is {li.rows} x {li.cols}")


def alive_channels(instance: NetworkInstance, solution: NetworkSolution) -> dict[str, np.ndarray]:
    """Per group, which channels are alive: input channels always; others iff a producer keeps the row."""
    alive = {}
    for gi in instance.groups:
        if gi.input:
            alive[gi.name] = np.ones(gi.size, bool)
        else:
            a = np.zeros(gi.size, bool)
            for p in gi.producers:
                a |= solution[p].rows
            alive[gi.name] = a
    return alive


def _input_alive(li: LayerInfo, alive: Mapping[str, np.ndarray]) -> np.ndarray:
    """Column mask of ``li`` whose input channel is alive."""
    chan = np.concatenate([alive[g] for g, _ in li.inputs])
    return np.repeat(chan, li.block)


def evaluate_network(instance: NetworkInstance, solution: NetworkSolution) -> NetworkEvaluation:
    """Per-layer and total cost, kept counts, dead channels and feasibility of ``solution``.

    Effective kept entries of layer l are ``R_l x (C_l restricted to live input channels)``;
    ``pruned_cost_l = total_l - kept sum`` over them; the budget counts effective kept entries.
    Feasible iff the global and per-layer budgets hold, every layer keeps its minimum count and every
    fixed (protected) row is kept. O(total entries).
    """
    check_network_solution(instance, solution)
    alive = alive_channels(instance, solution)
    layers, violations = [], []
    lb = instance.layer_budgets or {}
    total_cost = total_pruned = total_spend = 0.0
    total_count = 0
    measure = instance.measure
    for l, li in enumerate(instance.layers):
        s = solution[li.name]
        in_alive = _input_alive(li, alive)
        eff = s.cols & in_alive
        kept = kernels.kept_sum(instance.scores[li.name], s.rows, eff)
        r, e = int(s.rows.sum()), int(eff.sum())
        cost = max(float(instance.totals[l]) - kept, 0.0)
        w = float(instance.weights[l])
        count = r * e
        spend = measure.spend(li.name, r, e)
        total_spend += spend
        layers.append(LayerEvaluation(name=li.name, cost=cost, weighted_cost=w * cost, weight=w, kept_sum=kept,
                                      kept_count=count, n_rows=r, n_cols=e, forced_cols=int((~in_alive).sum()),
                                      density=count / li.size, size=li.size, spend=spend))
        total_cost += w * cost
        total_pruned += cost
        total_count += count
        lost = int((instance.fixed_rows(li.name) & ~s.rows).sum())
        if lost:
            violations.append(f"layer {li.name!r}: {lost} fixed row(s) pruned (protected, or in a channel floor)")
        lost = int((instance.fixed_cols(li.name) & ~eff).sum())
        if lost:
            violations.append(f"layer {li.name!r}: {lost} fixed column(s) pruned (they read a channel floor)")
        if count < instance.min_counts[l]:
            violations.append(f"layer {li.name!r}: keeps {count} entries, below its minimum {int(instance.min_counts[l])}")
        if li.name in lb and count > lb[li.name]:
            violations.append(f"layer {li.name!r}: keeps {count} entries, above its budget {lb[li.name]}")
    if instance.budget is not None and measure.is_count and total_count > instance.budget:
        violations.append(f"total kept entries {total_count} exceed the budget {instance.budget}")
    elif instance.budget is not None and not measure.is_count and total_spend > spend_limit(instance.budget):
        violations.append(f"total {measure.name} {total_spend:.6g} {measure.unit} exceeds the budget "
                          f"{instance.budget:.6g}")
    dead = {g: tuple(int(i) for i in np.flatnonzero(~a)) for g, a in alive.items() if not a.all()}
    return NetworkEvaluation(cost=total_cost, pruned_cost=total_pruned, kept_count=total_count,
                             budget=instance.budget, density=total_count / instance.total_entries,
                             feasible=not violations, violations=tuple(violations), layers=tuple(layers),
                             dead_channels=dead, spend=total_spend, measure=measure.name)

