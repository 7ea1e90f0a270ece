"""The group space: Torch-Pruning's search space as a restriction of the network problem.

Every channel group ``g`` keeps one channel set ``S_g``; every producer of ``g`` keeps exactly the rows
``S_g`` and every consumer keeps exactly the column blocks of ``S_g`` (all ``block`` columns of each
channel), so a compacted layer is a plain conv over fewer channels and residual adds need no index
gathers. Network inputs and protected groups keep every channel; a group's floor channels are always in
``S_g``; any other group may keep from ``|floor|`` down to no channel at all, as the network model allows.

Within a group the kept set of size ``n_g`` is the top ``n_g`` of one fixed *ranking* (floor channels
first, then by importance: the weighted score sum of the channel's producer rows and consumer column
blocks, Torch-Pruning's L1 group importance; ties to the lower index), so a state is a size ``n_g`` per
group. Each layer's cost is then ``w_l * total_l`` minus, per input group ``h``, a lookup in the 2-D prefix
sums of its block-summed scores with rows in its output group's ranking and columns in ``h``'s; its spend
is a lookup in its measure sampled at every whole-channel shape. O(total entries) to build; a layer's cost
or spend at a state is O(number of its input groups).

>>> from rcprune.network.generate import chain_network
>>> net = chain_network(budget=30)
>>> space = GroupSpace(net)
>>> n = space.full_sizes()
>>> n[space.index["conv1:out"]] = 1
>>> sol = space.solution(n)
>>> sol["conv1"].rows.tolist(), sol["conv2"].cols.tolist()
([True, False, False], [True, True, False, False, False, False])
>>> bool(abs(net.evaluate(sol).cost - space.cost(n)) < 1e-9)
True
"""
from __future__ import annotations

import numpy as np

from rcprune.network.floor import channel_scores
from rcprune.network.kernels import spend_limit
from rcprune.network.model import NetworkInstance, NetworkSolution
from rcprune.validation import InvalidInstanceError

__all__ = ["GroupSpace", "group_rankings"]


def group_rankings(instance: NetworkInstance) -> dict[str, np.ndarray]:
    """Per group, its channels in keeping order: floor channels first, then by decreasing importance
    (weighted score sums of the producer rows plus the consumer column blocks), ties to the lower index."""
    importance = channel_scores(instance, mean=False)
    return {g.name: np.lexsort((-importance[g.name], ~g.floor_mask)) for g in instance.groups}


class GroupSpace:
    """The group space of ``instance``: states are integer arrays of kept sizes per group (in
    ``instance.groups`` order); see the module docstring."""

    def __init__(self, instance: NetworkInstance):
        if not isinstance(instance, NetworkInstance):
            raise InvalidInstanceError(f"expected a rcprune.NetworkInstance, got {type(instance).__name__}")
        self.instance = instance
        groups = instance.groups
        self.names = tuple(g.name for g in groups)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.rankings = group_rankings(instance)
        self.sizes = np.array([g.size for g in groups], dtype=np.int64)
        pinned = np.array([g.input or g.protected for g in groups])
        self.lower = np.where(pinned, self.sizes, [len(g.floor) for g in groups]).astype(np.int64)
        self.out = np.array([self.index[li.output] for li in instance.layers], dtype=np.int64)
        self.inputs = [np.array([self.index[g] for g, _ in li.inputs], dtype=np.int64) for li in instance.layers]
        self.blocks = np.array([li.block for li in instance.layers], dtype=np.int64)
        self.full_cost = np.asarray(instance.weights) * np.asarray(instance.totals)
        self.prefix = [self._prefix_sums(l, li) for l, li in enumerate(instance.layers)]
        self.spends = [self._spend_grid(li) for li in instance.layers]
        self.min_counts = np.asarray(instance.min_counts)
        self.max_counts = instance.layer_budget_array()
        self.limit = spend_limit(instance.effective_budget)
        self.layers_of = [np.array(sorted({l for l in range(len(self.out)) if self.out[l] == g or g in self.inputs[l]}),
                                   dtype=np.int64) for g in range(len(groups))]

    def _prefix_sums(self, l: int, li) -> list[np.ndarray]:
        """Per input group, the 2-D prefix sums of the weighted block sums, rows and columns ranked."""
        s = self.instance.scores[li.name].reshape(li.rows, li.in_channels, li.block).sum(axis=2)
        s = s[self.rankings[li.output]] * float(self.instance.weights[l])
        out = []
        for g, off in li.inputs:
            p = np.zeros((li.rows + 1, self.instance.group(g).size + 1))
            p[1:, 1:] = s[:, off + self.rankings[g]].cumsum(axis=0).cumsum(axis=1)
            out.append(p)
        return out

    def _spend_grid(self, li) -> np.ndarray:
        """The layer's spend at every (kept rows, kept whole input channels)."""
        r = np.arange(li.rows + 1)[:, None]
        c = np.arange(li.in_channels + 1)[None, :] * li.block
        return np.broadcast_to(self.instance.measure.spend(li.name, r, c), (li.rows + 1, li.in_channels + 1))

    # --- states -----------------------------------------------------------------------------------
    def full_sizes(self) -> np.ndarray:
        """The state that keeps every channel."""
        return self.sizes.copy()

    def least_sizes(self) -> np.ndarray:
        """The smallest state this space allows: every group at its lower size, then, while a layer keeps
        fewer entries than its minimum, one more channel of its output or input group, whichever adds
        the least spend (ties to the lower index). Its spend is the least of the space when no minimum
        binds (as with a channel floor in every group). O(groups x layers) per added channel."""
        n = self.lower.copy()
        while True:
            short = [l for l in range(len(self.out)) if self.count(l, n) < self.min_counts[l]]
            if not short:
                return n
            l = short[0]
            options = [g for g in (self.out[l], *self.inputs[l]) if n[g] < self.sizes[g]]
            if not options:
                raise InvalidInstanceError(f"layer {self.instance.layer_names[l]!r} cannot keep its minimum "
                                           "count with whole channel groups")
            grown = {g: self.spend(n + np.eye(1, len(n), g, dtype=np.int64)[0]) for g in options}
            n[min(options, key=lambda g: (grown[g], g))] += 1

    # --- what a state costs and spends ------------------------------------------------------------
    def layer_cost(self, l: int, n: np.ndarray) -> float:
        r = n[self.out[l]]
        return float(self.full_cost[l] - sum(p[r, n[h]] for p, h in zip(self.prefix[l], self.inputs[l])))

    def layer_spend(self, l: int, n: np.ndarray) -> float:
        return float(self.spends[l][n[self.out[l]], n[self.inputs[l]].sum()])

    def count(self, l: int, n: np.ndarray) -> int:
        return int(n[self.out[l]] * self.blocks[l] * n[self.inputs[l]].sum())

    def cost(self, n: np.ndarray) -> float:
        return float(sum(self.layer_cost(l, n) for l in range(len(self.out))))

    def spend(self, n: np.ndarray) -> float:
        return float(sum(self.layer_spend(l, n) for l in range(len(self.out))))

    def counts_ok(self, n: np.ndarray, layers=None) -> bool:
        """Whether the (given) layers keep their minimum and at most their layer budget."""
        layers = range(len(self.out)) if layers is None else layers
        return all(self.min_counts[l] <= self.count(l, n) <= self.max_counts[l] for l in layers)

    def feasible(self, n: np.ndarray) -> bool:
        return bool(np.all((self.lower <= n) & (n <= self.sizes)) and self.counts_ok(n)
                    and self.spend(n) <= self.limit)

    # --- back to the instance ---------------------------------------------------------------------
    def kept(self, n: np.ndarray) -> dict[str, np.ndarray]:
        """Per group, the mask of its ``n_g`` top-ranked channels."""
        out = {}
        for i, name in enumerate(self.names):
            mask = np.zeros(self.sizes[i], bool)
            mask[self.rankings[name][:n[i]]] = True
            out[name] = mask
        return out

    def solution(self, n: np.ndarray) -> NetworkSolution:
        """The instance's solution of state ``n``: producers keep the rows of the kept channels, consumers
        their whole column blocks."""
        kept = self.kept(n)
        return NetworkSolution({li.name: (kept[li.output], np.repeat(np.concatenate([kept[g] for g, _ in li.inputs]),
                                                                     li.block))
                                for li in self.instance.layers})
