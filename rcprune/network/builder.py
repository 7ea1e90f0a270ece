"""Build a :class:`rcprune.NetworkInstance` the way a traced model reads: inputs, layers, residual adds."""
from __future__ import annotations

import numbers
from typing import Sequence

import networkx as nx
import numpy as np

from rcprune.network.model import NetworkInstance
from rcprune.validation import InvalidInstanceError, check_scores

__all__ = ["NetworkBuilder"]


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InvalidInstanceError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class NetworkBuilder:
    """Build a :class:`NetworkInstance` the way a traced model reads: inputs, layers, residual adds.

    ``layer`` returns the name of its output group (``"<layer>:out"``); ``add`` merges groups (the
    earliest-created name survives, the others are recorded as ``members``); ``flatten`` into a linear
    layer is a layer whose ``spatial=(H, W)`` makes each input channel a block of ``H*W`` columns.

    >>> import numpy as np
    >>> b = NetworkBuilder()
    >>> x = b.input("x", 4)
    >>> h = b.layer("c1", np.ones((4, 36)), x, kernel=(3, 3))
    >>> b.add(x, h)
    'x'
    >>> net = b.build(sparsity=0.5)
    >>> net.group("x").producers, net.group("x").consumers
    (('c1',), (('c1', 0),))
    """

    def __init__(self, name: str = "network"):
        self.name = name
        self._parent: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._inputs: set[str] = set()
        self._protected: set[str] = set()
        self._created: list[str] = []
        self._layers: list[tuple[str, np.ndarray, list[str], str, dict]] = []

    def _find(self, g: str) -> str:
        if g not in self._parent:
            raise InvalidInstanceError(f"unknown channel group {g!r}")
        while self._parent[g] != g:
            self._parent[g] = self._parent[self._parent[g]]
            g = self._parent[g]
        return g

    def _new_group(self, name: str, size: int) -> str:
        if name in self._parent or any(name == l[0] for l in self._layers):
            raise InvalidInstanceError(f"name {name!r} is already used")
        self._parent[name] = name
        self._sizes[name] = size
        self._created.append(name)
        return name

    def root(self, group: str) -> str:
        """The name ``group`` goes by after the adds so far."""
        return self._find(group)

    def input(self, name: str, channels: int) -> str:
        """A network input group (always alive)."""
        self._new_group(name, _positive_int(channels, f"input {name!r} channels"))
        self._inputs.add(name)
        return name

    def layer(self, name: str, scores, inputs: str | Sequence[str], *, kernel: Sequence[int] | None = None,
              spatial: Sequence[int] | None = None, protected: bool = False, positions: int | None = None) -> str:
        """Add a layer reading ``inputs`` (one group or a concatenation); returns its output group.
        ``positions``: output positions per sample (``H_out * W_out`` of a conv), for the MACs measure."""
        if name in self._parent or any(name == l[0] for l in self._layers):
            raise InvalidInstanceError(f"name {name!r} is already used")
        s = check_scores(scores, name=f"scores of layer {name!r}", copy=False)   # copied once, by the instance
        ins = [inputs] if isinstance(inputs, str) else list(inputs)
        out = self._new_group(f"{name}:out", s.shape[0])
        if protected:
            self._protected.add(out)
        attrs = {"kernel": list(kernel) if kernel else None, "spatial": list(spatial) if spatial else None,
                 "positions": positions}
        self._layers.append((name, s, ins, out, attrs))
        return out

    def add(self, *groups: str) -> str:
        """A residual add: the groups become one (same sizes required); returns the surviving name."""
        roots = sorted({self._find(g) for g in groups}, key=self._created.index)
        sizes = {self._sizes[r] for r in roots}
        if len(sizes) > 1:
            raise InvalidInstanceError(f"cannot add groups of different sizes: {[(r, self._sizes[r]) for r in roots]}")
        for r in roots[1:]:
            self._parent[r] = roots[0]
        return roots[0]

    def protect(self, group: str) -> None:
        """Fix every producer row of ``group`` (e.g. the classifier's outputs)."""
        self._protected.add(self._find(group))

    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph(name=self.name)
        roots = [c for c in self._created if self._find(c) == c]
        for r in roots:
            members = [c for c in self._created if self._find(c) == r and c != r]
            protected = any(self._find(p) == r for p in self._protected)
            g.add_node(r, kind="group", size=self._sizes[r], input=any(self._find(i) == r for i in self._inputs),
                       protected=protected, members=members)
        for order, (name, s, ins, out, attrs) in enumerate(self._layers):
            g.add_node(name, kind="layer", order=order, **attrs)
            g.add_edge(name, self._find(out))
            off = 0
            for grp in ins:
                root = self._find(grp)
                if g.has_edge(root, name):
                    raise InvalidInstanceError(f"layer {name!r} reads group {root!r} twice")
                g.add_edge(root, name, offset=off)
                off += self._sizes[root]
        return g

    def build(self, **kwargs) -> NetworkInstance:
        """The instance; keyword arguments go to :class:`NetworkInstance` (budget, weighting, ...)."""
        kwargs.setdefault("name", self.name)
        return NetworkInstance(self.graph(), {name: s for name, s, *_ in self._layers}, **kwargs)
