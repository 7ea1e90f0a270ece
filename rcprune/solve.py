"""One entry point for every single-matrix solver: ``solve(instance, method=...)``."""
from __future__ import annotations

import importlib
import inspect

from rcprune.matrix.model import Instance
from rcprune.result import SolveResult
from rcprune.validation import InvalidInstanceError, check_seed, check_time_limit

__all__ = ["solve", "METHODS", "RETENTION_METHODS", "NETWORK_METHODS", "method_names"]

# method name -> (module in rcprune.solvers, function)
METHODS: dict[str, tuple[str, str]] = {
    "top-rows": ("matrix.baseline", "top_rows"),
    "greedy-independent": ("matrix.greedy_independent", "greedy_independent"),
    "greedy-row-column": ("matrix.greedy_row_column", "greedy_row_column"),
    "greedy-column-row": ("matrix.greedy_row_column", "greedy_column_row"),
    "enumeration": ("matrix.enumeration", "exact_enumeration"),
    "cpsat": ("matrix.cpsat", "cpsat"),
    "annealing": ("matrix.annealing", "local_annealing"),
    "genetic": ("matrix.genetic", "genetic_search"),
}

# small-weight retention (rcprune.RetentionInstance): method name -> (module in rcprune.solvers, function)
RETENTION_METHODS: dict[str, tuple[str, str]] = {
    "magnitude": ("retention.magnitude", "magnitude"),
    "diagonal": ("retention.magnitude", "diagonal"),
    "retention-greedy": ("retention.greedy", "retention_greedy"),
    "retention-annealing": ("retention.annealing", "retention_annealing"),
    "retention-genetic": ("retention.genetic", "retention_genetic"),
    "retention-exact": ("retention.exact", "retention_exact"),
}


# whole networks (rcprune.NetworkInstance): method name -> (module in rcprune.solvers, function)
NETWORK_METHODS: dict[str, tuple[str, str]] = {
    "network-greedy": ("network.greedy", "network_greedy"),
    "network-allocation": ("network.allocation", "network_allocation"),
    "network-annealing": ("network.annealing", "network_annealing"),
    "network-cpsat": ("network.cpsat", "network_cpsat"),
}


def _solver(method: str, registry: dict[str, tuple[str, str]] = METHODS):
    if method not in registry:
        raise InvalidInstanceError(f"unknown method {method!r}; available: {', '.join(registry)}")
    module, func = registry[method]
    try:
        mod = importlib.import_module(f"rcprune.solvers.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"rcprune.solvers.{module}":
            raise InvalidInstanceError(f"method {method!r} is not available in this version of rcprune") from None
        raise
    return getattr(mod, func)


def method_names() -> list[str]:
    """Names of the methods available in this installation."""
    names = []
    for name, (module, _) in METHODS.items():
        try:
            importlib.import_module(f"rcprune.solvers.{module}")
        except ModuleNotFoundError:
            continue
        names.append(name)
    return names


def solve(instance: Instance, method: str = "greedy-row-column", *, seed: int | None = 0,
          time_limit: float | None = None, bound: bool | str = False, **options) -> SolveResult:
    """Solve an RC pruning instance with the named method.

    Parameters
    ----------
    instance : Instance
    method : str
        One of :data:`METHODS` (see ``method_names()``).
    seed : int
        Seed for randomized methods (ignored by deterministic ones); same seed, same answer.
    time_limit : float, optional
        Seconds; the best solution found so far is returned when it runs out.
    bound : bool or str, default False
        Single-matrix instances: attach the best proven lower bound (``True``: ``"best"``; or a method of
        :func:`rcprune.bounds.lower_bound`) with :func:`rcprune.bounds.certify`, so ``result.gap`` is a
        certified optimality gap. The bound gets its own ``time_limit`` (the same value). Network
        instances: ``True`` attaches :func:`rcprune.bounds.network.network_lower_bound`.
    **options
        Method-specific options; an unknown option is an error.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 1], [1, 1]], budget=1)
    >>> solve(inst, method="top-rows").cost
    3.0
    """
    from rcprune.retention.model import RetentionInstance
    from rcprune.network.model import NetworkInstance

    if isinstance(instance, RetentionInstance):  # methods of RETENTION_METHODS, named explicitly
        fn = _solver(method, RETENTION_METHODS)
    elif isinstance(instance, NetworkInstance):  # methods of NETWORK_METHODS, named explicitly
        fn = _solver(method, NETWORK_METHODS)
    elif not isinstance(instance, Instance):
        raise InvalidInstanceError(f"expected a rcprune.Instance, got {type(instance).__name__}")
    else:
        fn = _solver(method)
    params = inspect.signature(fn).parameters
    unknown = [k for k in options if k not in params or params[k].kind is not inspect.Parameter.KEYWORD_ONLY]
    if unknown:
        allowed = [k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("seed", "time_limit")]
        raise InvalidInstanceError(
            f"unknown option(s) {', '.join(unknown)} for method {method!r}; it takes: {', '.join(allowed) or 'none'}")
    if bound is not False and not isinstance(instance, (Instance, NetworkInstance)):
        raise InvalidInstanceError("bound= is available for single-matrix and network instances only")
    if bound not in (False, True) and isinstance(instance, NetworkInstance):
        raise InvalidInstanceError(f"network instances take bound=True (the network bound), got {bound!r}")
    result = fn(instance, seed=check_seed(seed), time_limit=check_time_limit(time_limit), **options)
    if bound is not False and isinstance(instance, NetworkInstance):
        from rcprune.bounds.network import certify_network

        result = certify_network(result, instance)
    elif bound is not False:
        from rcprune.bounds import certify

        result = certify(result, instance, "best" if bound is True else bound, time_limit=time_limit)
    return result
