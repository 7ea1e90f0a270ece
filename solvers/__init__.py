"""Solvers, one algorithm per module, in one folder per problem kind, all returning :class:`rcprune.SolveResult`.

The registry below names every method of every kind; :func:`rcprune.solve` dispatches through it, and a
method registered here is covered by the conformance tests at once. Reach the solvers through
``rcprune.solve(instance, method=...)`` or call a module's function directly.
"""
from __future__ import annotations

import importlib
import inspect

from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.model import Instance
from rcprune.network.model import NetworkInstance
from rcprune.retention.model import RetentionInstance
from rcprune.validation import InvalidInstanceError

__all__ = ["METHODS", "DEFAULT_METHODS", "OBJECTIVES", "RETENTION_OBJECTIVES", "KINDS", "kind_of", "solver", "check_options",
           "check_objective", "default_method"]

SHARED = ("seed", "time_limit", "progress")  # options of solve() itself, never method options

KINDS: dict[str, tuple[type, ...]] = {"matrix": (Instance, CompensatedInstance), "network": (NetworkInstance,),
                                      "retention": (RetentionInstance,)}

# kind -> method name -> (module in rcprune.solvers, function)
METHODS: dict[str, dict[str, tuple[str, str]]] = {
    "matrix": {
        "top-rows": ("matrix.baseline", "top_rows"),
        "greedy-independent": ("matrix.greedy_independent", "greedy_independent"),
        "greedy-row-column": ("matrix.greedy_row_column", "greedy_row_column"),
        "greedy-column-row": ("matrix.greedy_row_column", "greedy_column_row"),
        "enumeration": ("matrix.enumeration", "exact_enumeration"),
        "cpsat": ("matrix.cpsat", "cpsat"),
        "annealing": ("matrix.annealing", "local_annealing"),
        "genetic": ("matrix.genetic", "genetic_search"),
        "structured-obs": ("matrix.structured_obs", "structured_obs"),
        "compensated-rc-swap": ("matrix.compensated_swap", "compensated_rc_swap"),
        "compensated-rc-tabu": ("matrix.compensated_tabu", "compensated_rc_tabu"),
        "compensated-rc-exact": ("matrix.compensated_rc_exact", "compensated_rc_exact"),
        "compensated-rc-annealing": ("matrix.compensated_annealing", "compensated_rc_annealing"),
    },
    "network": {
        "network-greedy": ("network.greedy", "network_greedy"),
        "network-allocation": ("network.allocation", "network_allocation"),
        "network-annealing": ("network.annealing", "network_annealing"),
        "network-cpsat": ("network.cpsat", "network_cpsat"),
        "network-group": ("network.group", "network_group"),
        "network-uniform": ("network.uniform", "network_uniform"),
    },
    "retention": {
        "magnitude": ("retention.magnitude", "magnitude"),
        "diagonal": ("retention.magnitude", "diagonal"),
        "retention-greedy": ("retention.greedy", "retention_greedy"),
        "retention-annealing": ("retention.annealing", "retention_annealing"),
        "retention-genetic": ("retention.genetic", "retention_genetic"),
        "retention-exact": ("retention.exact", "retention_exact"),
        "obc": ("retention.obc", "obc"),
        "sparsegpt": ("retention.sparsegpt", "sparsegpt"),
        "compensated-swap": ("retention.swap", "retention_swap"),
        "compensated-tabu": ("retention.tabu", "compensated_tabu"),
        "compensated-annealing": ("retention.compensated_annealing", "compensated_annealing"),
        "compensated-exact": ("retention.compensated_exact", "compensated_exact"),
    },
}

# The objectives each method optimizes, for the kinds with more than one: solve() refuses the others.
# matrix: "scores" (the pruned sum of an importance matrix, rcprune.Instance) or "compensated" (the error
# after the refit, Instance.from_layer(W, hessian=H)); retention: "compensated" or "masked" (magnitude and
# diagonal ignore H's correlations: baselines for both).
_SCORES = ("scores",)
OBJECTIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "matrix": {**{m: _SCORES for m in ("top-rows", "greedy-independent", "greedy-row-column", "greedy-column-row",
                                       "enumeration", "cpsat", "annealing", "genetic")},
               "structured-obs": ("compensated",), "compensated-rc-swap": ("compensated",),
               "compensated-rc-tabu": ("compensated",), "compensated-rc-exact": ("compensated",),
               "compensated-rc-annealing": ("compensated",)},
    "retention": {
        "magnitude": ("compensated", "masked"), "diagonal": ("compensated", "masked"),
        "retention-greedy": ("masked",), "retention-annealing": ("masked",), "retention-genetic": ("masked",),
        "retention-exact": ("masked",),
        "obc": ("compensated",), "sparsegpt": ("compensated",), "compensated-swap": ("compensated",), "compensated-tabu": ("compensated",),
        "compensated-annealing": ("compensated",), "compensated-exact": ("compensated",),
    },
}
RETENTION_OBJECTIVES = OBJECTIVES["retention"]

# What method=None runs. matrix: the annealing starts from greedy B (a 2-approximation) and only improves
# it, within seconds on layer-sized matrices. network: the greedy, in seconds on a ResNet-50; the annealing
# lowers its cost by about 1.5% in a minute, and did not fine-tune better (docs/report-card.md).
# retention (compensated, the default objective): the tabu search, which starts from OBC and keeps the best
# it visits (median error 0.87-0.97x OBC's on the demo's trained layers, `rcprune bench layerwise`); masked:
# the greedy (the annealing and the genetic search start from it and rarely improve on it).
DEFAULT_METHODS: dict[str, str] = {"matrix": "annealing", "network": "network-greedy",
                                   "retention": "compensated-tabu"}
DEFAULT_BY_OBJECTIVE: dict[tuple[str, str], str] = {("retention", "masked"): "retention-greedy",
                                                     ("matrix", "compensated"): "compensated-rc-tabu"}


def default_method(instance) -> str:
    """What ``solve(instance)`` runs: the kind's default, or its objective's."""
    kind = kind_of(instance)
    return DEFAULT_BY_OBJECTIVE.get((kind, getattr(instance, "objective", None)), DEFAULT_METHODS[kind])


def check_objective(instance, method: str) -> None:
    """Refuse a method that does not optimize the instance's objective, naming the ones that do."""
    kind = kind_of(instance)
    objective = getattr(instance, "objective", None)
    table = OBJECTIVES.get(kind)
    if table is None or objective in table[method]:
        return
    fitting = [m for m, objs in table.items() if objective in objs]
    hint = (" (a data-aware instance: rcprune.Instance.from_layer(W, hessian=H, ...))"
            if kind == "matrix" and "compensated" in table[method] else "")
    raise InvalidInstanceError(
        f"method {method!r} optimizes the {' or '.join(table[method])} objective{hint}, not the instance's "
        f"{objective!r}; methods for it: {', '.join(fitting)}")


def kind_of(instance) -> str:
    """The kind of ``instance``: ``"matrix"``, ``"network"`` or ``"retention"``."""
    for kind, classes in KINDS.items():
        if isinstance(instance, classes):
            return kind
    raise InvalidInstanceError(
        f"expected a rcprune.Instance, NetworkInstance or RetentionInstance, got {type(instance).__name__}")


def solver(kind: str, method: str):
    """The function of ``method`` for instances of ``kind`` (an error names the kind's methods)."""
    registry = METHODS[kind]
    if not isinstance(method, str) or method not in registry:
        other = [k for k, r in METHODS.items() if isinstance(method, str) and method in r]
        hint = f" (a method for {other[0]} instances)" if other else ""
        raise InvalidInstanceError(
            f"unknown method {method!r} for a {kind} instance{hint}; available: {', '.join(registry)}")
    module, func = registry[method]
    return getattr(importlib.import_module(f"rcprune.solvers.{module}"), func)


def check_options(fn, method: str, options: dict) -> set[str]:
    """Refuse options that ``fn`` does not take; return its keyword-only option names."""
    params = inspect.signature(fn).parameters
    keyword = {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = [k for k in options if k not in keyword or k in SHARED]
    if unknown:
        allowed = sorted(keyword - set(SHARED))
        raise InvalidInstanceError(
            f"unknown option(s) {', '.join(unknown)} for method {method!r}; it takes: {', '.join(allowed) or 'none'}")
    return keyword
