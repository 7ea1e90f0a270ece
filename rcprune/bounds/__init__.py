"""Proven lower bounds on the optimal pruned cost: pure functions of an instance, one technique per module.

:mod:`.surrogate` (row and column sums), :mod:`.topk` and :mod:`.spectral` (per-shape tables),
:mod:`.lagrangian` (decomposition per shape), :mod:`.shapewise` (shapes that cannot beat an incumbent
discarded, the rest refined; exact per-shape solves are given by the caller), :mod:`.network` (whole
networks). Every technique returns a :class:`BoundResult` (the bound, the method, a one-paragraph proof,
per-shape bounds, runtime, trace). :func:`rcprune.certify.lower_bound` is the one entry point and
:func:`rcprune.certify.certify` attaches the best bound to a solver's result. Validity arguments: each
module's docstring and ``proofs/bounds.md``.

>>> import rcprune
>>> from rcprune.bounds.topk import topk_bound
>>> round(topk_bound(rcprune.Instance([[4, 1], [0, 3]], budget=2)).bound, 9)
3.0
"""
from rcprune.bounds.shapes import BoundResult, ShapeTable

__all__ = ["BoundResult", "ShapeTable"]
