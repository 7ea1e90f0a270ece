"""Certified optimality gaps for single matrices: the best proven lower bound, and a result certified by it.

:func:`lower_bound` (``method=...``) runs one technique of :mod:`rcprune.bounds`, or the best of them (the
shape-wise bound, with rcprune's exact per-shape solves and the greedy incumbent, never below the
surrogate bound); :func:`certify` attaches it to a solver's result, so ``result.gap`` is a certified gap.

>>> import rcprune
>>> inst = rcprune.Instance([[4, 1], [0, 3]], budget=2)
>>> round(lower_bound(inst, method="topk").bound, 9)
3.0
"""
from __future__ import annotations

import dataclasses
import time

from rcprune.bounds.lagrangian import lagrangian_bound
from rcprune.bounds.perspective import perspective_bound
from rcprune.bounds.shapes import BoundResult, safety_margin
from rcprune.bounds import shapewise
from rcprune.bounds.spectral import spectral_bound
from rcprune.bounds.surrogate import surrogate_bound
from rcprune.bounds.topk import topk_bound
from rcprune.matrix.compensated import CompensatedInstance
from rcprune.matrix.model import Instance
from rcprune.result import SolveResult
from rcprune.retention.model import RetentionInstance
from rcprune.solvers.matrix.exact_shapes import ExactShapes
from rcprune.validation import InvalidInstanceError, check_int_option, check_time_limit

__all__ = ["lower_bound", "certify", "BOUND_METHODS", "COMPENSATED_BOUND_METHODS", "DEFAULT_TIME_LIMIT"]

DEFAULT_TIME_LIMIT = 5.0  # seconds of refinement when no time limit is given

BOUND_METHODS = ("best", "surrogate", "topk", "spectral", "lagrangian", "shapewise")
COMPENSATED_BOUND_METHODS = ("best", "perspective")


def _surrogate(instance: Instance) -> BoundResult:
    start = time.perf_counter()
    sb = surrogate_bound(instance)
    bound = max(sb.lower_bound - safety_margin(instance), 0.0)
    proof = (f"surrogate bound: cost <= pruned row sums + pruned column sums <= 2 cost, minimized per shape "
             f"by the top rows and columns (surrogate {sb.surrogate:.10g} at shape {sb.shape}), and "
             f"kept <= min(top-r row sums, top-c column sums); OPT >= {bound:.10g}")
    return BoundResult(bound, "surrogate", proof, None, time.perf_counter() - start, 1,
                       info={"surrogate": sb.surrogate, "surrogate_shape": sb.shape})


def lower_bound(instance: Instance, method: str = "best", *, time_limit: float | None = None,
                incumbent=None, seed: int = 0, cpsat_max_entries: int | None = None) -> BoundResult:
    """A proven lower bound on the optimal pruned cost of ``instance``.

    Parameters
    ----------
    instance : Instance, RetentionInstance or CompensatedInstance
        Budget or fixed-shape form. A compensated weight selection (:class:`rcprune.RetentionInstance`) or
        data-aware RC instance gets the perspective bound (:mod:`rcprune.bounds.perspective`; methods
        ``"best"`` and ``"perspective"``, run to completion unless ``time_limit`` is given).
    method : str
        ``"surrogate"`` (row/column sums, :func:`rcprune.bounds.surrogate.surrogate_bound`),
        ``"topk"`` (:mod:`.topk`), ``"spectral"`` (:mod:`.spectral`), ``"lagrangian"`` (:mod:`.lagrangian`,
        the decomposition bound optimized per shape), ``"shapewise"`` (:mod:`.shapewise`: cheap bounds on
        every shape, shapes that cannot beat the incumbent discarded, the rest refined or solved exactly),
        or ``"best"`` (shapewise, never below the surrogate bound).
    time_limit : float, optional
        Seconds for the iterative methods (``lagrangian``, ``shapewise``, ``best``); the bound found so far
        is returned (every iterate is valid). Default :data:`DEFAULT_TIME_LIMIT` (5 s) of refinement,
        after the cheap tables.
    incumbent : float or SolveResult, optional
        Cost of a known feasible solution; shapes whose bound reaches it are not refined further.
    seed : int
        For the exact per-shape solves (deterministic otherwise).
    cpsat_max_entries : int, optional
        ``shapewise`` / ``best``: CP-SAT solves a shape first on matrices up to this many entries (default
        :data:`rcprune.bounds.shapewise.CPSAT_MAX_ENTRIES`); larger ones get it with the time left after
        the Lagrangian pass (see :func:`rcprune.bounds.shapewise.shapewise_bound`).

    Returns
    -------
    BoundResult
        ``bound <= OPT``.
    """
    if isinstance(instance, (RetentionInstance, CompensatedInstance)):
        if method not in COMPENSATED_BOUND_METHODS:
            raise InvalidInstanceError(f"unknown bound method {method!r} for a {type(instance).__name__}; "
                                       f"available: {', '.join(COMPENSATED_BOUND_METHODS)}")
        return perspective_bound(instance, time_limit=check_time_limit(time_limit))
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"expected a rcprune.Instance, RetentionInstance (compensated) or data-aware "
                                   f"RC instance, got {type(instance).__name__}")
    if method not in BOUND_METHODS:
        raise InvalidInstanceError(f"unknown bound method {method!r}; available: {', '.join(BOUND_METHODS)}")
    time_limit = check_time_limit(time_limit)
    if time_limit is None:
        time_limit = DEFAULT_TIME_LIMIT
    incumbent_cost = _incumbent_cost(incumbent)
    if method == "surrogate":
        return _surrogate(instance)
    if method == "topk":
        return topk_bound(instance)
    if method == "spectral":
        return spectral_bound(instance)
    if method == "lagrangian":
        return lagrangian_bound(instance, time_limit=time_limit, incumbent=incumbent_cost)
    if cpsat_max_entries is None:
        cpsat_max_entries = shapewise.CPSAT_MAX_ENTRIES
    cpsat_max_entries = check_int_option(cpsat_max_entries, "cpsat_max_entries", minimum=0)
    if incumbent_cost is None:
        incumbent_cost = ExactShapes.incumbent(instance)
    res = shapewise.shapewise_bound(instance, incumbent_cost, time_limit=time_limit, seed=seed, exact=ExactShapes,
                          cpsat_max_entries=cpsat_max_entries)
    if method == "best":
        sur = _surrogate(instance)
        if sur.bound > res.bound:
            res = dataclasses.replace(res, bound=sur.bound, proof=sur.proof)
        res = dataclasses.replace(res, method="best")
    return res


def _incumbent_cost(incumbent) -> float | None:
    if incumbent is None:
        return None
    if isinstance(incumbent, SolveResult):
        return float(incumbent.cost) if incumbent.feasible else None
    try:
        value = float(incumbent)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"incumbent must be a cost or a SolveResult, got {incumbent!r}") from None
    if not value >= 0:
        raise InvalidInstanceError(f"incumbent cost must be a non-negative number, got {incumbent!r}")
    return value


def certify(result: SolveResult, instance: Instance, method: str = "best", *,
            time_limit: float | None = None) -> SolveResult:
    """``result`` with the best of its own lower bound and :func:`lower_bound`'s; ``gap`` is then certified.

    The status becomes ``"optimal"`` when the bound meets the cost (within 1e-9 relative).
    ``info["bound"]`` holds the bound's method, proof and runtime.

    >>> import rcprune
    >>> inst = rcprune.Instance([[4, 1], [0, 3]], budget=2)
    >>> res = certify(rcprune.solve(inst, method="top-rows"), inst)
    >>> res.cost, round(res.lower_bound, 9), res.status
    (3.0, 3.0, 'optimal')
    """
    if not isinstance(result, SolveResult):
        raise InvalidInstanceError(f"expected a rcprune.SolveResult, got {type(result).__name__}")
    b = lower_bound(instance, method, time_limit=time_limit, incumbent=result)
    own = result.lower_bound
    best = b.bound if own is None else max(own, b.bound)
    if result.feasible:
        if best > result.cost + 1e-9 * max(1.0, abs(result.cost)):
            raise RuntimeError(f"lower bound {best} exceeds the cost {result.cost} of a feasible solution")
        best = min(best, result.cost)
    proven = result.feasible and result.cost - best <= 1e-9 * max(1.0, abs(result.cost))
    status = "optimal" if proven else result.status
    info = dict(result.info)
    info["bound"] = {"method": b.method, "bound": b.bound, "proof": b.proof, "runtime": b.runtime}
    return dataclasses.replace(result, lower_bound=float(best), status=status, info=info)
