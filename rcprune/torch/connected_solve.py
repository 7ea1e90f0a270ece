"""The network solve of :func:`rcprune.torch.prune`: connected, cleaned and spending its budget.

A solver's solution is cleaned (kept rows no consumer reads dropped, the budget they free spent on columns
of the kept rows); a solution that leaves the output without a path from the input is solved again with the
cut group nearest the input and every group it left without a channel kept alive (:func:`solve_connected`); network-greedy is run plainly and, where
that wasted something, comparing its candidates after cleaning (:func:`solve_best_connected`); and while
the cleaned solution leaves budget unspent, larger solver budgets are tried (:func:`spend_fully`, with the
secant rule :func:`next_budget` that the latency calibration uses too).
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from rcprune.network.cleanup import drop_unread_rows, input_reaches_outputs, output_groups
from rcprune.network.floor import fix_channels
from rcprune.network.granularity import coarsen, refine
from rcprune.network.group_space import group_rankings
from rcprune.network.model import NetworkInstance, alive_channels
from rcprune.solvers.network.greedy import refill_columns
from rcprune.validation import InvalidInstanceError

__all__ = ["solve_connected", "solve_best_connected", "spend_fully", "wasted", "next_budget", "cut_to_protect",
           "cuts_to_protect", "reconnect", "RESPEND_TOL", "RESPEND_ROUNDS"]

RESPEND_TOL = 0.02      # a cleaned solution keeping 98% of its budget is not solved again
RESPEND_ROUNDS = 4


def _dominator_chain(instance: NetworkInstance) -> list[str]:
    """The groups every input-to-output path passes through, from the input towards the output."""
    g = nx.DiGraph()
    for gi in instance.groups:
        if gi.input:
            g.add_edge("<source>", gi.name)
    for name in output_groups(instance):
        g.add_edge(name, "<sink>")
    for li in instance.layers:
        for src, _ in li.inputs:
            g.add_edge(src, li.output)
    chain, node = [], "<sink>"
    idom = nx.immediate_dominators(g, "<source>") if g.has_node("<sink>") else {}
    while node in idom and idom[node] != node:
        node = idom[node]
        chain.append(node)
    return chain[::-1]


def cut_to_protect(instance: NetworkInstance, unreached: list[str]) -> str:
    """The unreached group nearest the input among those every input-to-output path passes through (a
    ResNet's stem and stage groups, not a removed branch's inside), else the unreached group produced
    first in layer order."""
    for group in _dominator_chain(instance):
        if group in unreached and instance.group(group).producers:
            return group
    first = {u: min(instance.layer(p).index for p in instance.group(u).producers) for u in unreached
             if instance.group(u).producers}
    return min(first, key=first.get)


def cuts_to_protect(instance: NetworkInstance, unreached: list[str], dead: set[str]) -> list[str]:
    """:func:`cut_to_protect`'s group, then every other ``dead`` group (a solution that keeps none of its
    channels) not kept alive yet, in layer order: what to keep alive after a solution cut the network.

    The one group nearest the input alone was protected per solve before: the next solve then cut at the
    next dead group, one solve per group (39 solves on DenseNet-121 at 70% removed). All of them at once
    (a squeeze-excitation's reduced group too, which the channel ranking puts last although the gated
    channels die with it) was measured on the 16 torchvision models at 50% and 70% removed (random
    weights, docs/architectures.md): the same cost on 25 of 32, 4-25% lower on seven (ResNet-50,
    MobileNetV3, EfficientNet-B0, DenseNet-121 at 70%; ResNet-50's solve also keeps its whole budget),
    0.1% higher on MobileNetV2 at 50%, and 2-5x faster where it reconnects. A dead group that no path
    needs (a whole residual branch) is kept alive too, which costs a little where removing a branch whole
    was right (the tests' CIFAR ResNet-8 under a MACs budget without a channel floor: 0.4-0.9% higher);
    this runs only after a solution cut the network."""
    first = cut_to_protect(instance, unreached)
    more = [g.name for g in instance.groups if g.name != first and g.name in dead   # dead: never reached
            and g.producers and not (g.protected or g.fixed)]
    return [first] + more


def reconnect(instance: NetworkInstance, groups: str | list[str], granularity: str) -> NetworkInstance:
    """``instance`` with ``groups`` (a name or a list) kept alive: protected, or in the group space (where
    protecting keeps every channel, read whole by every consumer) each one's top-ranked channel fixed.
    Raises when that does not fit the budget."""
    groups = [groups] if isinstance(groups, str) else list(groups)
    if granularity == "group":
        rankings = group_rankings(instance)
        return fix_channels(instance, {g: rankings[g][:1] for g in groups})
    graph = nx.DiGraph(instance.graph)
    for group in groups:
        graph.nodes[group]["protected"] = True
    return instance.replace(graph=graph)


def solve_connected(instance: NetworkInstance, granularity: str, method: str, options: dict):
    """Solve (in the granularity's space), drop unread rows and re-spend their budget on columns; while
    the solution cuts every path from the input to an output (the importance scores do not see that
    everything after a layer depends on it, and a latency table makes whole layers tempting), keep the
    cut group nearest the input and every group the solution left without a channel alive
    (:func:`cuts_to_protect`: protected; in the group space, each one's best channel fixed: a path is
    cut there only by a group keeping no channel; where they do not all fit the budget, the first alone)
    and solve again. Returns the (possibly more
    constrained) instance, the searched instance, the solver's result, the cleaned solution and the
    groups kept alive on the way."""
    from rcprune.solve import solve

    protected: list[str] = []
    while True:
        searched = coarsen(instance, granularity)
        found = solve(searched, method=method, **options)
        if not found.feasible:
            raise InvalidInstanceError(f"method {method!r} returned an infeasible solution (status {found.status})")
        # unread rows out, their budget into columns of the kept rows, in the searched space
        clean = drop_unread_rows(searched, refill_columns(searched, drop_unread_rows(searched, found.solution)))
        ok, unreached = input_reaches_outputs(searched, clean)
        if ok:
            return instance, searched, found, clean, protected
        alive = alive_channels(searched, clean)
        if granularity == "group":
            unreached = [g for g in unreached if not alive[g].any()] or unreached
        groups = cuts_to_protect(instance, unreached, {g for g, a in alive.items() if not a.any()})
        group = groups[0]
        kept = instance.group(group).fixed if granularity == "group" else instance.group(group).protected
        cut = (f"every {method} solution found cuts the path from the input to the output (no signal reaches "
               f"{', '.join(unreached[:4])}{' ...' if len(unreached) > 4 else ''})")
        if kept or len(protected) >= len(instance.groups):
            raise InvalidInstanceError(f"{cut} although {group!r} is kept alive: its producers keep rows but "
                                       "read no live input; ask for less")
        for tried in ([groups, [group]] if len(groups) > 1 else [groups]):
            try:   # all the cutting groups alive at once; where they do not fit, the nearest the input alone
                instance, groups = reconnect(instance, tried, granularity), tried
                break
            except InvalidInstanceError as exc:
                error = exc
        else:
            raise InvalidInstanceError(f"{cut}, and keeping {group!r} alive too does not fit the budget ({error}): "
                                       "ask for less") from None
        protected.extend(groups)


def solve_best_connected(instance: NetworkInstance, granularity: str, method: str, options: dict,
                          variants: list[dict]):
    """:func:`solve_connected` with ``options`` updated by each of ``variants`` in turn, while the last
    one's solution wasted something (:func:`wasted`); the solve whose cleaned solution has the lowest
    cost (a variant that cannot connect the network is skipped unless all fail). A later variant is
    solved from ``instance`` and, where the solve before it protected groups to stay connected, also
    from that solve's instance (those groups kept alive from the start).

    ``prune`` runs network-greedy as the instance's objective counts kept rows, then, where that solution
    kept unread rows, needed reconnecting or under-spends, comparing its candidates after the unread rows
    are dropped (``drop_unread=True``). Measured on the 16 torchvision models at 50% and 70% removed
    (random weights, docs/architectures.md): the second keeps the whole budget and costs up to 40% less on
    ResNets, ResNeXt, DenseNet, ShuffleNet, ConvNeXt and ViT, but 8-28% more on MobileNetV2/V3 and
    EfficientNet, where the first's reconnect rounds keep whole the narrow residual streams the channel
    ranking puts last; solved from the first's reconnected instance it matched or beat both there
    (EfficientNet-B0 at 50%: 2.6% below the better of the two; ResNet-50 at 70%: 6.5%), while from the
    original instance it stayed 1.2% better on DenseNet-121 at 70%."""
    best, best_cost, error, previous = None, np.inf, None, None
    for extra in variants:
        before, previous = previous, None
        for start in [instance] + ([before[0]] if before is not None and before[4] else []):
            try:
                solved = solve_connected(start, granularity, method, {**options, **extra})
            except InvalidInstanceError as exc:
                error = error or exc
                continue
            if start is not instance:   # the groups the solve before protected stay listed as protected
                solved = solved[:4] + (before[4] + solved[4],)
            found = instance.evaluate(refine(instance, solved[3], granularity))
            if float(found.cost) < best_cost:
                best, best_cost = solved, float(found.cost)
            if start is instance:
                previous, spend = solved, float(found.spend)
        if previous is not None and not wasted(instance, previous, spend):
            break
    if best is None:
        raise error
    return best


def wasted(instance: NetworkInstance, solved, spend: float) -> bool:
    """Whether a solve kept rows no consumer reads, protected groups to stay connected or leaves more than
    ``RESPEND_TOL`` of the budget unspent after cleaning. Where none of these happened, the objective
    counted nothing the network does not compute at the greedy's chosen t (comparing every t after
    cleaning may still pick another: measured 0-2% better on AlexNet, RegNetY, SqueezeNet)."""
    _, _, found, clean, protected = solved
    dropped = any(int(found.solution[name].rows.sum()) != int(kept.rows.sum()) for name, kept in clean.items())
    return bool(protected) or dropped or spend < (1 - RESPEND_TOL) * float(instance.budget)


def spend_fully(instance: NetworkInstance, first, solve_at, granularity: str, rounds: int = RESPEND_ROUNDS):
    """The best solve under ``instance``'s budget among ``first`` and re-solves at larger solver budgets.

    The objective counts a kept row's importance even when no consumer reads it; such rows are dropped
    after the solve and the budget they free buys only columns of the kept rows, so a cleaned solution
    can keep much less than asked (measured, torchvision ResNet-50 at 50% removed: 61% of its budget).
    While the cleaned spend is under ``1 - RESPEND_TOL`` of the budget, solve again at a larger budget
    (the last round's ratio, then the secant between rounds on both sides: :func:`next_budget`, with the
    solver's budget as its prediction and the cleaned spend as its measurement), up to ``rounds`` times.
    Each round starts from ``first``'s instance (with the groups it protected to stay connected). Kept:
    the lowest cost whose cleaned spend fits the budget; ``first`` fits, so the result is never worse
    than it. Returns that solve (its instance with the original budget) and the rounds' records
    (``solver_budget``, ``spend``, ``cost``; empty when ``first`` spends enough)."""
    budget = float(instance.budget)

    def measured(solved):
        found = instance.evaluate(refine(instance, solved[3], granularity))
        return float(found.spend), float(found.cost)

    spend, cost = measured(first)
    if spend >= budget * (1 - RESPEND_TOL) or not rounds:
        return first, []
    log = [{"budget_ms": budget, "predicted_ms": budget, "measured_ms": spend, "cost": cost}]
    best, best_cost = first, cost
    full = float(instance.full_spend.sum())
    while len(log) <= rounds:
        larger = next_budget(log, budget, 0.0, budget, full)
        if instance.measure.is_count:
            larger = int(min(round(larger), full))
        if any(abs(larger - r["budget_ms"]) <= 1e-9 * budget for r in log):
            break
        try:   # from the first solve's instance: the groups it protected to stay connected stay protected
            solved = solve_at(first[0].replace(budget=larger))
        except InvalidInstanceError:
            break
        spend, cost = measured(solved)
        log.append({"budget_ms": larger, "predicted_ms": larger, "measured_ms": spend, "cost": cost})
        if spend <= budget and cost < best_cost:
            best, best_cost = solved, cost
        if budget * (1 - RESPEND_TOL) <= spend <= budget:
            break
    kept = best if best is first else (best[0].replace(budget=instance.budget),) + tuple(best[1:])
    return kept, [{"solver_budget": r["budget_ms"], "spend": r["measured_ms"], "cost": r["cost"]} for r in log]


def next_budget(rounds: list[dict], target: float, fixed: float, least: float, full: float) -> float:
    """The table budget (without the fixed part) of the next calibration round, from the rounds so far
    (``budget_ms``, ``predicted_ms``, ``measured_ms``, in the table's milliseconds).

    Once one round measured at or under ``target`` and another over it, the budget is the secant between
    the bracketing pair nearest the target in budget (the table's error is not one ratio: a fixed
    per-layer cost it misses makes a ratio correction overshoot, and the rounds then swing around the
    target; measured on the MNIST ResNet-20 at TP 0.9's target: 6.45, 7.89, 7.68 ms for 7.43). Until
    then, the last round's misprediction rescales the budget: ``target * predicted / measured - fixed``.
    Clipped to ``[least, full]``.

    >>> rounds = [{"budget_ms": 7.4, "predicted_ms": 7.4, "measured_ms": 6.4},
    ...           {"budget_ms": 8.6, "predicted_ms": 8.6, "measured_ms": 7.9}]
    >>> round(next_budget(rounds, 7.4, 1.0, 0.0, 20.0) + 1.0, 3)   # 7.4 + (7.4 - 6.4) * 1.2 / 1.5
    8.2
    """
    below = [r for r in rounds if r["measured_ms"] <= target]
    above = [r for r in rounds if r["measured_ms"] > target]
    if below and above:
        lo = max(below, key=lambda r: r["budget_ms"])
        hi = min(above, key=lambda r: r["budget_ms"])
        if hi["budget_ms"] > lo["budget_ms"] and hi["measured_ms"] > lo["measured_ms"]:
            step = (target - lo["measured_ms"]) / (hi["measured_ms"] - lo["measured_ms"])
            budget = lo["budget_ms"] + step * (hi["budget_ms"] - lo["budget_ms"]) - fixed
        else:   # timing noise broke the order: halve the gap
            budget = (lo["budget_ms"] + hi["budget_ms"]) / 2 - fixed
    else:
        last = rounds[-1]
        budget = target * last["predicted_ms"] / last["measured_ms"] - fixed
    return min(max(budget, least), full)
