"""Instance families on which the greedies' approximation ratio tends to 2: the factor 2 is tight.

Each generator takes ``eps`` in (0, 1) and a block size k >= 1 and returns an :class:`rcprune.Instance`
whose metadata records the proven optimum, the proven cost of the greedies it defeats and their ratio,
which tends to 2 as eps -> 0. Ties never matter: eps makes every top set unique, or the tied candidates
have equal value. Proofs: ``proofs/approximation.md``, section "Tightness".

>>> inst = tight_instance("tight-independent", 0.01)
>>> inst.scores.tolist(), inst.budget
([[1.0, 0.01], [0.0, 1.0]], 1)
>>> inst.metadata["greedy_cost"], inst.metadata["optimum_cost"], inst.metadata["tight_for"]
(2.0, 1.01, ['greedy-independent'])
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError

__all__ = ["TIGHT_FAMILIES", "tight_instance", "independent_tight", "row_column_tight", "column_row_tight"]

MAX_ENTRIES = 10_000_000


def _check(eps, block) -> tuple[float, int]:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < float(eps) < 1.0:
        raise InvalidInstanceError(f"eps must be a number in (0, 1), got {eps!r}")
    if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1:
        raise InvalidInstanceError(f"block must be a positive integer, got {block!r}")
    return float(eps), int(block)


def _blow_up(base: np.ndarray, k: int, family: str, eps: float, optimum: float, greedy: float,
             tight_for: list[str]) -> Instance:
    """Replace every entry by a k x k block of it; budget 1 for k = 1, else shape (k, k).

    Costs scale by k^2 (every shape (k, k) solution the proof considers is a union of whole blocks).
    """
    if base.size * k * k > MAX_ENTRIES:
        raise InvalidInstanceError(
            f"{family} with eps={eps} and block={k} has {base.size * k * k} entries (more than {MAX_ENTRIES})")
    scores = np.kron(base, np.ones((k, k)))
    meta = {"source": "rcprune.theory.tight", "family": family, "eps": eps, "block": k,
            "optimum_cost": optimum * k * k, "greedy_cost": greedy * k * k, "ratio": greedy / optimum,
            "tight_for": tight_for, "best_known_cost": optimum * k * k, "best_lower_bound": optimum * k * k,
            "proven": True, "best_method": "construction"}
    budget = {"budget": 1} if k == 1 else {"shape": (k, k)}
    return Instance(scores, name=f"{family}-eps{eps:g}-k{k}", metadata=meta, **budget)


def independent_tight(eps: float, block: int = 1) -> Instance:
    """Greedy A's bad family: S = [[1, eps], [0, 1]] (blown up by k x k blocks), budget 1 or shape (k, k).

    Row 0 outweighs row 1 (1 + eps > 1) and column 1 outweighs column 0, so greedy A keeps the eps block:
    cost 2 k^2, while the optimum keeps a block of ones: cost (1 + eps) k^2. Ratio 2 / (1 + eps) >= 2 - 2 eps.
    Greedy B and its mirror solve it exactly.

    >>> independent_tight(0.5, block=2).scores.shape
    (4, 4)
    """
    eps, k = _check(eps, block)
    base = np.array([[1.0, eps], [0.0, 1.0]])
    return _blow_up(base, k, "tight-independent", eps, 1.0 + eps, 2.0, ["greedy-independent"])


def _spread_row(eps: float) -> tuple[np.ndarray, float, float]:
    """[[x] * n, [1, 0, ..., 0]] with n = ceil(1 / eps) columns and x = (1 + eps) / n; its optimum and
    the cost of keeping one x."""
    n = max(2, math.ceil(1.0 / eps))
    x = (1.0 + eps) / n
    base = np.zeros((2, n))
    base[0, :] = x
    base[1, 0] = 1.0
    total = float(base.sum())
    return base, total - 1.0, total - x


def row_column_tight(eps: float, block: int = 1) -> Instance:
    """Greedy B's bad family: row 0 spreads 1 + eps over n = ceil(1/eps) columns, row 1 is [1, 0, ..., 0].

    Greedy B takes the heavier row 0 and can keep only one of its entries x = (1 + eps)/n; the optimum
    keeps the 1. Cost (2 + eps - x) k^2 against (1 + eps) k^2: ratio 2 - (eps + x)/(1 + eps) >= 2 - 2 eps.
    Greedy A (column 0 is the heaviest) fails the same way; the mirror solves it exactly.

    >>> row_column_tight(0.25).scores.tolist()
    [[0.3125, 0.3125, 0.3125, 0.3125], [1.0, 0.0, 0.0, 0.0]]
    """
    eps, k = _check(eps, block)
    base, optimum, greedy = _spread_row(eps)
    return _blow_up(base, k, "tight-row-column", eps, optimum, greedy,
                    ["greedy-row-column", "greedy-independent"])


def column_row_tight(eps: float, block: int = 1) -> Instance:
    """The mirror's bad family: the transpose of :func:`row_column_tight`. Same costs and ratio for the
    mirror (greedy column-row) and greedy A; greedy B solves it exactly.

    >>> column_row_tight(0.5).scores.tolist()
    [[0.75, 1.0], [0.75, 0.0]]
    """
    eps, k = _check(eps, block)
    base, optimum, greedy = _spread_row(eps)
    return _blow_up(base.T.copy(), k, "tight-column-row", eps, optimum, greedy,
                    ["greedy-column-row", "greedy-independent"])


TIGHT_FAMILIES: dict[str, Callable[..., Instance]] = {
    "tight-independent": independent_tight,
    "tight-row-column": row_column_tight,
    "tight-column-row": column_row_tight,
}


def tight_instance(family: str, eps: float, block: int = 1) -> Instance:
    """The member of a tight family (a key of :data:`TIGHT_FAMILIES`) for ``eps`` and block size k."""
    if family not in TIGHT_FAMILIES:
        raise InvalidInstanceError(f"unknown tight family {family!r}; available: {', '.join(TIGHT_FAMILIES)}")
    return TIGHT_FAMILIES[family](eps, block)
