"""Keeping the instance library's best-known costs and proven bounds up to date (``rcprune instances update``)."""
from __future__ import annotations

from typing import Any

from rcprune import library
from rcprune.certify import lower_bound
from rcprune.matrix.model import Instance
from rcprune.solve import solve
from rcprune.validation import InvalidInstanceError

__all__ = ["update", "too_large_for"]


ENUMERATION_MAX_SIDE = 24
CPSAT_MAX_ENTRIES = 2500


def too_large_for(method: str, inst: Instance) -> str | None:
    """Why an exact method is not worth running on a library instance (None if it is)."""
    if method == "enumeration" and min(inst.m, inst.n) > ENUMERATION_MAX_SIDE:
        return f"min side {min(inst.m, inst.n)} > {ENUMERATION_MAX_SIDE}"
    if method == "cpsat" and inst.m * inst.n > CPSAT_MAX_ENTRIES:
        return f"{inst.m * inst.n} entries > {CPSAT_MAX_ENTRIES}"
    return None


def update(names_: list[str] | None = None, methods: tuple[str, ...] = ("greedy-row-column",),
           time_limit: float | None = 30.0, seed: int = 0, bound_time: float | None = None,
           log=print) -> list[dict[str, Any]]:
    """Run ``methods`` on library instances and record improved best-known costs and proven bounds.

    Only bounds that a method proves (``lower_bound``) are recorded, plus, with ``bound_time``, the best
    certified bound of :func:`rcprune.certify.lower_bound`; the index says ``proven`` when the best bound
    meets the best known cost.
    """
    rows = []
    for name in names_ or library.names():
        inst = library.get(name)
        for method in methods:
            if too_large_for(method, inst):
                log(f"{name}: {method} skipped ({too_large_for(method, inst)})")
                continue
            try:
                res = solve(inst, method=method, seed=seed, time_limit=time_limit)
            except InvalidInstanceError as exc:  # e.g. enumeration refuses large sides
                log(f"{name}: {method} skipped ({exc})")
                continue
            improved = library.record(name, cost=res.cost, method=method, lower_bound=res.lower_bound)
            rows.append({"name": name, "method": method, "status": res.status, "cost": res.cost,
                         "lower_bound": res.lower_bound, "runtime": res.runtime, "improved": improved})
            log(f"{name}: {method} {res.status} cost={res.cost:.6g} bound={res.lower_bound} "
                f"({res.runtime:.2f} s){' improved' if improved else ''}")
        if bound_time:
            b = lower_bound(inst, time_limit=bound_time, seed=seed)
            row = library.index()[name]
            library.record(name, cost=row["best_known_cost"], method=row["best_method"], lower_bound=b.bound)
            log(f"{name}: certified lower bound {b.bound:.6g} ({b.method})")
    return rows
