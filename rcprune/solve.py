"""The one protocol of every problem kind: ``solve(instance, method=...)``, ``evaluate(instance, solution)``,
``method_names(kind)``.

Three kinds of instance share it: single-matrix RC pruning (:class:`rcprune.Instance`, kind ``"matrix"``),
whole networks (:class:`rcprune.NetworkInstance`, ``"network"``) and small-weight retention
(:class:`rcprune.RetentionInstance`, ``"retention"``). Each kind has its own methods, one module each in
``rcprune.solvers.<kind>``, and a default: the method that gives the lowest cost in seconds on the bundled
benchmarks (``docs/report-card.md``).
"""
from __future__ import annotations

from rcprune.result import SolveResult
from rcprune.solvers import (DEFAULT_METHODS, KINDS, METHODS, OBJECTIVES, RETENTION_OBJECTIVES, check_objective,
                             check_options, default_method, kind_of, solver)
from rcprune.validation import InvalidInstanceError, check_seed, check_time_limit

__all__ = ["solve", "evaluate", "method_names", "METHODS", "DEFAULT_METHODS", "RETENTION_OBJECTIVES", "KINDS"]


def method_names(kind: str | None = None, objective: str | None = None) -> list[str]:
    """Names of the methods of one kind (``"matrix"``, ``"network"``, ``"retention"``), or of every kind;
    optionally only those optimizing ``objective`` (matrix: ``"scores"`` or ``"compensated"``; retention:
    ``"compensated"`` or ``"masked"``).

    >>> method_names("retention")[:2]
    ['magnitude', 'diagonal']
    >>> method_names("retention", objective="compensated")
    ['magnitude', 'diagonal', 'obc', 'sparsegpt', 'compensated-swap', 'compensated-tabu', 'compensated-annealing', 'compensated-exact']
    """
    if kind is None:
        if objective is not None:
            raise InvalidInstanceError("objective selects the methods of one kind: give kind too")
        return [name for registry in METHODS.values() for name in registry]
    if not isinstance(kind, str) or kind not in METHODS:
        raise InvalidInstanceError(f"unknown instance kind {kind!r}; kinds: {', '.join(METHODS)}")
    if objective is None:
        return list(METHODS[kind])
    table = OBJECTIVES.get(kind, {})
    objectives = {o for objs in table.values() for o in objs}
    if objective not in objectives:
        raise InvalidInstanceError(f"objective {objective!r} does not select {kind} methods; {kind} objectives: "
                                   f"{', '.join(sorted(objectives)) or 'none (one objective)'}")
    return [m for m in METHODS[kind] if objective in table[m]]


def evaluate(instance, solution):
    """What ``solution`` achieves on ``instance``, for every kind: the objective (``cost``), ``kept_sum``,
    ``kept_count``, ``feasible`` and the kind's own facts (:class:`rcprune.Evaluation`,
    :class:`rcprune.network.model.NetworkEvaluation`, :class:`rcprune.retention.model.RetentionEvaluation`).

    >>> import rcprune
    >>> evaluate(rcprune.Instance([[3, 1], [1, 0]], budget=2), rcprune.Solution([True, False], [True, True])).cost
    1.0
    """
    kind_of(instance)
    return instance.evaluate(solution)


def solve(instance, method: str | None = None, *, seed: int | None = 0, time_limit: float | None = None,
          bound: bool | str = False, progress: bool = False, **options) -> SolveResult:
    """Solve an instance of any kind with the named method.

    Parameters
    ----------
    instance : Instance, NetworkInstance or RetentionInstance
    method : str, optional
        One of ``method_names(instance.kind)``; ``None`` runs the kind's default (:data:`DEFAULT_METHODS`;
        for a retention instance with the masked objective, ``retention-greedy``).
    seed : int
        Seed for randomized methods (ignored by deterministic ones); same seed, same answer.
    time_limit : float, optional
        Seconds; the best solution found so far is returned when it runs out.
    bound : bool or str, default False
        Matrix instances: attach the best proven lower bound (``True``: ``"best"``; or a method of
        :func:`rcprune.certify.lower_bound`) with :func:`rcprune.certify.certify`, so ``result.gap`` is a
        certified optimality gap; the bound gets its own ``time_limit`` (the same value). Network
        instances: ``True`` attaches :func:`rcprune.bounds.network.network_lower_bound`. Retention: the
        exact method proves its optimum itself; ``bound`` is refused.
    progress : bool
        Show a progress bar where the method has one.
    **options
        Method-specific options; an unknown option is an error.

    >>> import rcprune
    >>> inst = rcprune.Instance([[5, 1], [1, 1]], budget=1)
    >>> solve(inst, method="top-rows").cost
    3.0
    >>> solve(inst).method, solve(inst).status
    ('annealing', 'feasible')
    """
    kind = kind_of(instance)
    method = default_method(instance) if method is None else method
    fn = solver(kind, method)
    check_objective(instance, method)
    keyword = check_options(fn, method, options)
    if not isinstance(progress, bool):
        raise InvalidInstanceError(f"progress must be True or False, got {progress!r}")
    if not (isinstance(bound, bool) or isinstance(bound, str)):
        raise InvalidInstanceError(f"bound must be True, False or a bound method name, got {bound!r}")
    if bound is not False and (kind == "retention" or getattr(instance, "objective", None) == "compensated"):
        raise InvalidInstanceError("bound= is available for matrix (score) and network instances only; the "
                                   "compensated objective has no certified bound yet")
    if isinstance(bound, str) and kind == "network":
        raise InvalidInstanceError(f"network instances take bound=True (the network bound), got {bound!r}")
    if "progress" in keyword:
        options["progress"] = progress
    result = fn(instance, seed=check_seed(seed), time_limit=check_time_limit(time_limit), **options)
    if bound is not False and kind == "network":
        from rcprune.bounds.network import certify_network

        result = certify_network(result, instance)
    elif bound is not False:
        from rcprune.certify import certify

        result = certify(result, instance, "best" if bound is True else bound, time_limit=time_limit)
    return result
