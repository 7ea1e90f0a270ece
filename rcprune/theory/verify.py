"""Check the proven guarantees empirically: every greedy within 2 OPT, every lower bound at most OPT.

``verify_bounds`` draws seeded random small instances (both forms, integer and float scores, every budget),
computes OPT by a vectorized brute force written here from the definition (independent of the solvers), runs
the greedies through :func:`rcprune.solve`, and reports the worst ratio cost / OPT per method. The proofs are
in ``proofs/approximation.md``; a ratio above 2 or a bound above OPT would be a bug.

>>> report = verify_bounds(n=50, seed=1, max_side=4)
>>> all(r.worst_ratio <= 2 and r.violations == 0 == r.bound_violations for r in report.values())
True
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.result import SolveResult
from rcprune.solve import solve
from rcprune.validation import InvalidInstanceError, check_int_option, check_real_option, check_seed

__all__ = ["GREEDY_METHODS", "BoundReport", "verify_bounds", "format_bounds", "brute_force_costs",
           "random_instances"]

GREEDY_METHODS = ("greedy-independent", "greedy-row-column", "greedy-column-row")
SCORE_KINDS = ("integer", "binary", "uniform", "sparse", "heavy")
MAX_SUBSET_PAIRS = 1 << 20          # 2^m * 2^n per instance in the brute force
_CHUNK_ENTRIES = 1 << 22            # kept-sum entries held at once (32 MiB of float64)


@dataclass(frozen=True)
class BoundReport:
    """Outcome of :func:`verify_bounds` for one method.

    Attributes
    ----------
    method : str
    instances : int
    worst_ratio : float
        max cost / OPT (1 when cost = OPT = 0; inf when OPT = 0 < cost). Proven <= 2.
    mean_ratio : float
    worst_instance : Instance or None
        An instance attaining ``worst_ratio`` (the first one drawn).
    worst_cost, worst_optimum : float
    violations : int
        Instances with cost > 2 OPT + tolerance (proven: none).
    bound_violations : int
        Instances with lower_bound > OPT + tolerance (proven: none).
    infeasible : int
        Instances where the method returned an infeasible solution (never, by construction).
    """

    method: str
    instances: int
    worst_ratio: float
    mean_ratio: float
    worst_instance: Instance | None
    worst_cost: float
    worst_optimum: float
    violations: int
    bound_violations: int
    infeasible: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary; the worst instance as its scores and budget."""
        inst = self.worst_instance
        worst = None if inst is None else {
            "name": inst.name, "scores": inst.scores.tolist(), "budget": inst.budget,
            "fixed_shape": list(inst.fixed_shape) if inst.fixed_shape else None}
        return {"method": self.method, "instances": self.instances, "worst_ratio": self.worst_ratio,
                "mean_ratio": self.mean_ratio, "worst_cost": self.worst_cost, "worst_optimum": self.worst_optimum,
                "violations": self.violations, "bound_violations": self.bound_violations,
                "infeasible": self.infeasible, "worst_instance": worst}


def _subsets(k: int) -> np.ndarray:
    return np.array(list(itertools.product((0.0, 1.0), repeat=k))).reshape(-1, k)


def brute_force_costs(instances: Sequence[Instance]) -> np.ndarray:
    """Optimal pruned costs by enumerating every row subset times every column subset.

    Instances of equal size are stacked; kept(R, C) = 1_R^T S 1_C for all pairs at once is a batched matrix
    product, masked by feasibility (|R| |C| <= K, or the fixed shape). Needs 2^(m+n) <= 2^20 per instance.

    >>> brute_force_costs([Instance([[3, 1], [1, 0]], budget=2), Instance([[3, 1], [1, 5]], shape=(1, 1))])
    array([1., 5.])
    """
    out = np.empty(len(instances))
    groups: dict[tuple[int, int], list[int]] = {}
    for idx, inst in enumerate(instances):
        if not isinstance(inst, Instance):
            raise InvalidInstanceError(f"expected rcprune.Instance objects, got {type(inst).__name__}")
        if 2 ** (inst.m + inst.n) > MAX_SUBSET_PAIRS:
            raise InvalidInstanceError(
                f"brute force enumerates 2^(m+n) subset pairs; {inst.m} x {inst.n} is too large (m + n <= 20)")
        groups.setdefault((inst.m, inst.n), []).append(idx)
    for (m, n), members in groups.items():
        rows, cols = _subsets(m), _subsets(n)
        r_size, c_size = rows.sum(axis=1), cols.sum(axis=1)
        chunk = max(1, _CHUNK_ENTRIES // (len(rows) * len(cols)))
        for start in range(0, len(members), chunk):
            part = [instances[i] for i in members[start:start + chunk]]
            scores = np.stack([inst.scores for inst in part])                     # (b, m, n)
            kept = np.matmul(np.matmul(rows, scores), cols.T)                     # (b, 2^m, 2^n)
            budget = np.array([inst.budget for inst in part], dtype=np.float64)[:, None, None]
            shape = np.array([inst.fixed_shape or (-1, -1) for inst in part], dtype=np.float64)
            fixed = (shape[:, 0] >= 0)[:, None, None]
            by_budget = np.outer(r_size, c_size)[None] <= budget
            by_shape = (r_size[None, :, None] == shape[:, 0, None, None]) & (c_size[None, None, :] == shape[:, 1, None, None])
            feasible = np.where(fixed, by_shape, by_budget)
            best = np.where(feasible, kept, -np.inf).reshape(len(part), -1).max(axis=1)
            totals = scores.reshape(len(part), -1).sum(axis=1)
            out[members[start:start + chunk]] = np.maximum(totals - best, 0.0)
    return out


def _scores(kind: str, m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "integer":
        return rng.integers(0, 10, size=(m, n)).astype(np.float64)
    if kind == "binary":
        return (rng.random((m, n)) < 0.5).astype(np.float64)
    if kind == "uniform":
        return rng.random((m, n))
    if kind == "sparse":
        return rng.random((m, n)) * (rng.random((m, n)) < 0.3)
    if kind == "heavy":
        return np.abs(rng.standard_cauchy((m, n)))
    raise AssertionError(kind)


def random_instances(n: int, seed: int = 0, max_side: int = 7, fixed_shape_fraction: float = 0.25) -> list[Instance]:
    """``n`` seeded random instances with 1 <= m, n <= ``max_side``: integer 0..9, 0/1, uniform, sparse and
    Cauchy-magnitude scores; a fixed shape with probability ``fixed_shape_fraction``, else a budget uniform in
    1..m n. Instance i depends only on (seed, i).

    >>> [inst.name for inst in random_instances(2, seed=3)]
    ['verify-seed3-0', 'verify-seed3-1']
    """
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        m, k = int(rng.integers(1, max_side + 1)), int(rng.integers(1, max_side + 1))
        kind = SCORE_KINDS[int(rng.integers(len(SCORE_KINDS)))]
        scores = _scores(kind, m, k, rng)
        meta = {"source": "rcprune.theory.verify", "seed": seed, "index": i, "kind": kind}
        if rng.random() < fixed_shape_fraction:
            shape = (int(rng.integers(1, m + 1)), int(rng.integers(1, k + 1)))
            out.append(Instance(scores, shape=shape, name=f"verify-seed{seed}-{i}", metadata=meta))
        else:
            out.append(Instance(scores, budget=int(rng.integers(1, m * k + 1)), name=f"verify-seed{seed}-{i}",
                                metadata=meta))
    return out


def _ratio(cost: float, opt: float, tol: float) -> float:
    if opt > tol:
        return cost / opt
    return 1.0 if cost <= tol else math.inf


def verify_bounds(n: int = 10000, seed: int = 0, max_side: int = 7, *,
                  methods: Iterable[str | Callable[[Instance], SolveResult]] = GREEDY_METHODS,
                  fixed_shape_fraction: float = 0.25, tolerance: float = 1e-9) -> dict[str, BoundReport]:
    """Worst ratio cost / OPT per method over ``n`` random instances (see :func:`random_instances`).

    Parameters
    ----------
    n : int
        Number of instances (>= 1).
    seed : int
    max_side : int
        Largest m and n, 1..10 (the brute force enumerates 2^(m+n) subset pairs).
    methods : iterable of str or callable
        Method names for :func:`rcprune.solve`, or functions ``instance -> SolveResult`` (keyed by ``__name__``).
    fixed_shape_fraction : float
        Share of fixed-shape instances, in [0, 1].
    tolerance : float
        Relative tolerance: a violation is cost > 2 OPT + tolerance max(1, total).

    Returns
    -------
    dict of str to BoundReport
        One report per method, in the given order. Proven: every ``worst_ratio <= 2`` and no violations
        (``proofs/approximation.md``, Theorems 6-10).

    Notes
    -----
    O(n (2^(m+n) + solver time)); the default 10,000 instances up to 7 x 7 take seconds.
    """
    n = check_int_option(n, "n", 1)
    seed = check_seed(seed)
    max_side = check_int_option(max_side, "max_side", 1)
    if max_side > 10:
        raise InvalidInstanceError(f"max_side must be at most 10 (brute force over 2^(m+n) pairs), got {max_side}")
    if isinstance(fixed_shape_fraction, bool) or not isinstance(fixed_shape_fraction, (int, float)) \
            or not 0.0 <= fixed_shape_fraction <= 1.0:
        raise InvalidInstanceError(f"fixed_shape_fraction must be in [0, 1], got {fixed_shape_fraction!r}")
    tolerance = check_real_option(tolerance, "tolerance", 0.0, 1.0)
    runners: dict[str, Callable[[Instance], SolveResult]] = {}
    for method in methods:
        if isinstance(method, str):
            solve(Instance([[1.0]], budget=1), method=method)  # unknown names fail here, before the long run
            runners[method] = lambda inst, name=method: solve(inst, method=name)
        elif callable(method):
            runners[getattr(method, "__name__", repr(method))] = method
        else:
            raise InvalidInstanceError(f"methods must be method names or callables, got {method!r}")
    if not runners:
        raise InvalidInstanceError("methods is empty")

    instances = random_instances(n, seed, max_side, float(fixed_shape_fraction))
    optima = brute_force_costs(instances)
    reports = {}
    for name, run in runners.items():
        worst, worst_at, total_ratio = -1.0, 0, 0.0
        worst_cost = violations = bound_violations = infeasible = 0
        for idx, (inst, opt) in enumerate(zip(instances, optima)):
            res = run(inst)
            tol = tolerance * max(1.0, inst.total)
            ratio = _ratio(res.cost, float(opt), tol)
            total_ratio += ratio
            violations += res.cost > 2.0 * opt + tol
            bound_violations += res.lower_bound is not None and res.lower_bound > opt + tol
            infeasible += not res.feasible
            if ratio > worst:
                worst, worst_at, worst_cost = ratio, idx, res.cost
        reports[name] = BoundReport(
            method=name, instances=n, worst_ratio=worst, mean_ratio=total_ratio / n,
            worst_instance=instances[worst_at], worst_cost=float(worst_cost), worst_optimum=float(optima[worst_at]),
            violations=int(violations), bound_violations=int(bound_violations), infeasible=int(infeasible))
    return reports


def format_bounds(reports: dict[str, BoundReport]) -> str:
    """A plain-text table of :func:`verify_bounds` results, one line per method.

    >>> print(format_bounds(verify_bounds(n=5, methods=["greedy-row-column"])).splitlines()[0])
    method               instances  worst ratio  mean ratio  cost > 2 OPT  bound > OPT  worst instance
    """
    head = (f"{'method':<20} {'instances':>9}  {'worst ratio':>11}  {'mean ratio':>10}  {'cost > 2 OPT':>12}  "
            f"{'bound > OPT':>11}  worst instance")
    lines = [head]
    for rep in reports.values():
        inst = rep.worst_instance
        where = "-" if inst is None else (
            f"{inst.name} ({inst.m} x {inst.n}, "
            + (f"shape={inst.fixed_shape}" if inst.fixed_shape else f"budget={inst.budget}")
            + f"): cost {rep.worst_cost:.6g} vs OPT {rep.worst_optimum:.6g}")
        lines.append(f"{rep.method:<20} {rep.instances:>9}  {rep.worst_ratio:>11.6f}  {rep.mean_ratio:>10.6f}  "
                     f"{rep.violations:>12}  {rep.bound_violations:>11}  {where}")
    ok = all(r.violations == 0 and r.bound_violations == 0 and r.infeasible == 0 for r in reports.values())
    lines.append("proven (proofs/approximation.md): ratio <= 2 and lower bound <= OPT -- "
                 + ("all checks passed" if ok else "VIOLATED: this is a bug, please report the instance"))
    return "\n".join(lines)
