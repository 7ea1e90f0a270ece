"""Whole-network benchmark: ResNet-18 / ResNet-50-shaped instances at several sparsities, every method.

Costs are the weighted pruned cost (``rel_cost`` divides by the cost of pruning everything) and
``vs_greedy`` compares each method with the global greedy measured in the same run. A channel-pruning
baseline (the top channels by the greedy's ranking, all their columns, as many as fit) is reported
beside the solvers. Timings depend on the machine and its load.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from rcprune.network.model import NetworkInstance, NetworkSolution, evaluate_network
from rcprune.network.generate import get_network
from rcprune.result import Stopwatch
from rcprune.solve import solve
from rcprune.validation import InvalidInstanceError

__all__ = ["bench_network", "channel_pruning_baseline", "BENCH_COLUMNS", "BOUND_COLUMNS"]

BENCH_COLUMNS = ["model", "sparsity", "method", "cost", "rel_cost", "vs_greedy", "runtime", "status", "feasible",
                 "dead_channels"]
# added by ``bound=True``: the certified lower bound of the (model, sparsity), each row's gap, the bound's time
BOUND_COLUMNS = ["lower_bound", "gap", "bound_runtime"]
MODELS = {"resnet18": "resnet18", "resnet50": "resnet50"}


def channel_pruning_baseline(instance: NetworkInstance) -> tuple[NetworkSolution, dict]:
    """Channel pruning under the budget: keep the top-t channels (the global greedy's channel ranking),
    every column of the kept channels, with the largest t that fits (bisection on t).

    >>> from rcprune.network.generate import chain_network
    >>> sol, info = channel_pruning_baseline(chain_network(budget=30))
    >>> info["kept_channels"], evaluate_network(chain_network(budget=30), sol).kept_count <= 30
    (4, True)
    """
    from rcprune.solvers.network.greedy import channel_order

    order, _ = channel_order(instance)
    f = instance.flat
    groups = instance.groups

    def solution(t: int) -> NetworkSolution:
        keep = np.zeros(f.chan_input.shape[0], bool)
        keep[order[:t]] = True
        masks = {}
        for i, g in enumerate(groups):
            if not g.input and not g.protected:   # a floor's channels always stay
                masks[g.name] = keep[f.group_off[i]:f.group_off[i + 1]] | g.fixed_mask
        return NetworkSolution.from_channels(instance, masks)

    def fits(t: int) -> bool:
        return evaluate_network(instance, solution(t)).feasible

    lo, hi = 0, order.shape[0]
    if fits(hi):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
    return solution(lo), {"kept_channels": int(lo), "rankable_channels": int(order.shape[0])}


def bench_network(models: Sequence[str] = ("resnet18", "resnet50"),
                  sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.93),
                  methods: Sequence[str] = ("network-greedy", "network-allocation", "network-annealing"),
                  time_limit: float = 60.0, seed: int = 0, baseline: bool = True, bound: bool = False,
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """Run the network methods on ResNet-shaped library instances; one row per (model, sparsity, method).

    ``network-annealing`` starts from the greedy's solution of the same run and gets ``time_limit``
    seconds (its runtime excludes the greedy's); ``network-allocation`` uses the marginal allocation and
    local annealing per layer within ``time_limit``. The greedy is always run (it is the reference).
    With ``bound``, :func:`rcprune.bounds.network.network_lower_bound` runs once per (model, sparsity) and
    every row gets :data:`BOUND_COLUMNS`: ``lower_bound``, ``gap = (cost - lower_bound) / cost`` (certified;
    None for an infeasible row) and ``bound_runtime`` (seconds, the same on the rows of one instance).
    """
    rows: list[dict] = []
    for model in models:
        if model not in MODELS:
            raise InvalidInstanceError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
        for sp in sparsities:
            name = f"{MODELS[model]}-s{int(round(100 * sp))}"
            try:
                inst = get_network(name)
            except InvalidInstanceError:
                inst = get_network(f"{MODELS[model]}-s90").replace(sparsity=float(sp), name=f"{model}-s{sp}")
            total = inst.weighted_total
            if bound:
                from rcprune.bounds.network import network_lower_bound

                clock = Stopwatch()
                low = float(network_lower_bound(inst).bound)
                bound_runtime = clock.elapsed()
            greedy = solve(inst, method="network-greedy", seed=seed)
            results = []
            if baseline:
                clock = Stopwatch()
                sol, _info = channel_pruning_baseline(inst)
                ev = evaluate_network(inst, sol)
                results.append(("channel-pruning", ev.cost, clock.elapsed(), "feasible", ev.feasible,
                                sum(len(v) for v in ev.dead_channels.values())))
            for method in methods:
                if method == "network-greedy":
                    res = greedy
                elif method == "network-annealing":
                    res = solve(inst, method=method, seed=seed, time_limit=time_limit, start=greedy.solution)
                elif method == "network-allocation":
                    res = solve(inst, method=method, seed=seed, time_limit=time_limit)
                else:
                    res = solve(inst, method=method, seed=seed, time_limit=time_limit)
                dead = sum(len(v) for v in res.evaluation.dead_channels.values())
                results.append((method, res.cost, res.runtime, res.status, res.feasible, dead))
            for method, cost, runtime, status, feasible, dead in results:
                row = {"model": model, "sparsity": float(sp), "method": method, "cost": float(cost),
                       "rel_cost": float(cost / total) if total > 0 else 0.0,
                       "vs_greedy": float(cost / greedy.cost - 1.0) if greedy.cost > 0 else 0.0,
                       "runtime": float(runtime), "status": status, "feasible": bool(feasible),
                       "dead_channels": int(dead)}
                if bound:
                    gap = max(0.0, (cost - low) / cost) if cost > 0 else 0.0
                    row.update(lower_bound=low, gap=float(gap) if feasible else None, bound_runtime=bound_runtime)
                rows.append(row)
                if log:
                    log(f"{model} s={sp}: {method} cost {cost:.6g} ({100 * row['vs_greedy']:+.2f}% vs greedy) "
                        f"in {runtime:.2f} s")
    return rows
