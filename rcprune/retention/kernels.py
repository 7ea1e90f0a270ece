"""Retention kernels: the one definition of the reconstruction error and its incremental updates.

For one row w of W with keep-mask M, the pruned part is d = (1 - M) * w, the maintained state is
g = H d, and the row error is E = d^T g. Single-entry changes cost O(1) to score and O(n) to apply:

* removal of kept j:   d' = d + w_j e_j,  dE = 2 w_j g_j + w_j^2 H_jj,  g += w_j H[:, j];
* restoring pruned l:  d' = d - w_l e_l,  dE = -2 w_l g_l + w_l^2 H_ll, g -= w_l H[:, l];
* swap (j out, l in):  dE = 2 w_j g_j - 2 w_l g_l + w_j^2 H_jj + w_l^2 H_ll - 2 w_j w_l H_jl.

Each numba kernel has a numpy reference (``*_reference``) computed from the definition, which the tests
compare against. Kernels trust their inputs: C-contiguous float64 ``w`` (n,), ``h`` (n, n) symmetric,
boolean ``keep`` (n,). The randomized solvers draw from :mod:`rcprune.random_stream`.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from rcprune.compensation import quadratic_forms
from rcprune.jit import jit

__all__ = [
    "row_error", "row_error_reference",
    "row_errors", "row_errors_reference",
    "pruned_gradient", "pruned_gradient_reference",
    "removal_delta", "removal_delta_reference",
    "restore_delta", "restore_delta_reference",
    "swap_delta", "swap_delta_reference",
    "apply_removal", "apply_restore", "apply_swap",
    "apply_removal_reference", "apply_restore_reference", "apply_swap_reference",
]

_JIT = dict(nogil=True)


# --- full evaluation -------------------------------------------------------------------------------

@jit(**_JIT)
def row_error(w, h, keep):
    """E = d^T H d of one row, d = pruned part of w. O(p^2) for p pruned weights, no allocation."""
    n = w.shape[0]
    total = 0.0
    for j in range(n):
        if not keep[j]:
            s = 0.0
            for l in range(n):
                if not keep[l]:
                    s += h[j, l] * w[l]
            total += w[j] * s
    return total


def row_error_reference(w, h, keep):
    d = np.where(keep, 0.0, w)
    return float(d @ h @ d)


@jit(parallel=True, nogil=True)
def row_errors(weights, h, mask):
    """Per-row errors of a layer (rows in parallel). O(m n^2)."""
    m = weights.shape[0]
    out = np.empty(m)
    for i in prange(m):
        out[i] = row_error(weights[i], h, mask[i])
    return out


def row_errors_reference(weights, h, mask):
    d = np.where(mask, 0.0, weights)
    return quadratic_forms(d, h)


@jit(**_JIT)
def pruned_gradient(w, h, keep):
    """g = H d for the pruned part d of w. O(n p)."""
    n = w.shape[0]
    g = np.zeros(n)
    for l in range(n):
        if not keep[l]:
            wl = w[l]
            for j in range(n):
                g[j] += h[j, l] * wl
    return g


def pruned_gradient_reference(w, h, keep):
    return h @ np.where(keep, 0.0, w)


# --- O(1) deltas given g = H d ------------------------------------------------------------------------

@jit(**_JIT)
def removal_delta(w, h, g, j):
    """Change of E when kept weight j is pruned."""
    return w[j] * (2.0 * g[j] + w[j] * h[j, j])


@jit(**_JIT)
def restore_delta(w, h, g, l):
    """Change of E when pruned weight l is kept again."""
    return w[l] * (w[l] * h[l, l] - 2.0 * g[l])


@jit(**_JIT)
def swap_delta(w, h, g, j, l):
    """Change of E when kept j is pruned and pruned l is kept."""
    wj, wl = w[j], w[l]
    return 2.0 * (wj * g[j] - wl * g[l]) + wj * wj * h[j, j] + wl * wl * h[l, l] - 2.0 * wj * wl * h[j, l]


def _flip_reference(w, h, keep, prune=(), restore=()):
    after = keep.copy()
    after[list(prune)] = False
    after[list(restore)] = True
    return row_error_reference(w, h, after) - row_error_reference(w, h, keep)


def removal_delta_reference(w, h, keep, j):
    return _flip_reference(w, h, keep, prune=[j])


def restore_delta_reference(w, h, keep, l):
    return _flip_reference(w, h, keep, restore=[l])


def swap_delta_reference(w, h, keep, j, l):
    return _flip_reference(w, h, keep, prune=[j], restore=[l])


# --- applying a change: O(n) ------------------------------------------------------------------------

@jit(**_JIT)
def apply_removal(w, h, g, keep, j):
    """Prune kept j in place and update g. O(n)."""
    keep[j] = False
    wj = w[j]
    for t in range(w.shape[0]):
        g[t] += wj * h[t, j]


@jit(**_JIT)
def apply_restore(w, h, g, keep, l):
    """Keep pruned l in place and update g. O(n)."""
    keep[l] = True
    wl = w[l]
    for t in range(w.shape[0]):
        g[t] -= wl * h[t, l]


@jit(**_JIT)
def apply_swap(w, h, g, keep, j, l):
    """Prune kept j, keep pruned l, in place, and update g. O(n)."""
    keep[j] = False
    keep[l] = True
    wj, wl = w[j], w[l]
    for t in range(w.shape[0]):
        g[t] += wj * h[t, j] - wl * h[t, l]


def apply_removal_reference(w, h, g, keep, j):
    keep[j] = False
    g[:] = pruned_gradient_reference(w, h, keep)


def apply_restore_reference(w, h, g, keep, l):
    keep[l] = True
    g[:] = pruned_gradient_reference(w, h, keep)


def apply_swap_reference(w, h, g, keep, j, l):
    keep[j], keep[l] = False, True
    g[:] = pruned_gradient_reference(w, h, keep)
