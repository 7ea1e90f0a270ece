"""Where the compensated local searches start: OBC's mask, or SparseGPT's on layers too large for OBC, and
how many pruned weights a swap may bring in from there."""
from __future__ import annotations

import numpy as np

from rcprune.result import Stopwatch
from rcprune.retention.model import RetentionInstance
from rcprune.validation import check_choice, check_int_option

from rcprune.solvers.retention.obc import obc_mask
from rcprune.solvers.retention.sparsegpt import sparsegpt_mask

__all__ = ["STARTS", "OBC_WORK", "CANDIDATES", "start_mask", "row_data"]

STARTS = ("auto", "obc", "sparsegpt")
OBC_WORK = 1e11  # m n^3 / 3 multiply-adds: above this OBC takes minutes, and "auto" starts from SparseGPT
CANDIDATES = 32  # pruned weights a swap may bring in, per round, when starting from SparseGPT


def start_mask(instance: RetentionInstance, start: str, candidates: int | None, *, clock: Stopwatch,
               progress: bool = False) -> tuple[np.ndarray, bool, str, int]:
    """``(mask, timed out, start, candidates)``: ``start`` resolved ("auto": OBC unless its m n^3 / 3 work
    exceeds ``OBC_WORK``) and its mask; ``candidates`` defaults to every weight from OBC and to
    ``CANDIDATES`` from SparseGPT.

    >>> import rcprune
    >>> from rcprune.result import Stopwatch
    >>> inst = rcprune.RetentionInstance([[1.0, 0.8, 0.7]], [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]], k=2)
    >>> keep, timed_out, start, candidates = start_mask(inst, "auto", None, clock=Stopwatch(None))
    >>> keep.tolist(), start, candidates
    ([[True, False, True]], 'obc', 3)
    """
    start = check_choice(start, "start", STARTS)
    if start == "auto":
        start = "obc" if instance.m * instance.n ** 3 / 3 <= OBC_WORK else "sparsegpt"
    if candidates is None:
        candidates = instance.n if start == "obc" else CANDIDATES
    candidates = min(check_int_option(candidates, "candidates", minimum=1), instance.n)
    if start == "obc":
        keep, timed_out = obc_mask(instance, clock=clock, progress=progress)
    else:
        keep, timed_out = sparsegpt_mask(instance, clock=clock)
    return keep, timed_out, start, candidates


def row_data(instance: RetentionInstance, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the row kernels read of each row: ``(b = H w per row, w^T H w per row, improvement threshold
    tolerance x w^T H w)``. O(m n^2), one matrix product."""
    targets = instance.weights @ instance.hessian
    energies = np.einsum("ij,ij->i", instance.weights, targets)
    return targets, energies, tolerance * np.maximum(energies, 1e-300)
