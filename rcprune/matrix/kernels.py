"""Cost kernels: the one definition of the RC objective that every solver calls.

Each kernel is a numba ``@njit`` function with a plain numpy reference of the same name plus
``_reference``; tests check that both agree. Kernels trust their inputs (validated upstream):
``scores`` is a C-contiguous float64 (m, n) matrix, ``scores_t`` its C-contiguous transpose,
``rows``/``cols`` are boolean keep-masks. ``scores`` may also be float32 (the annealing chain's
copies, :attr:`rcprune.Instance.scores_float32`): sums still accumulate in float64, and a swap's
difference of two scores is taken in float64, so a float32 score enters every sum exactly.

Incremental state used by the local-search solvers:

* ``col_sums[j] = sum_{i in R} S[i, j]`` -- column sums restricted to the kept rows (all j);
* ``row_sums[i] = sum_{j in C} S[i, j]`` -- row sums restricted to the kept columns (all i).

With both maintained, the change of the kept sum of any single-row or single-column toggle or swap
is O(1), and applying the move updates the other side's sums in O(n) (row move) or O(m) (column move).
"""
from __future__ import annotations

import numpy as np
from rcprune.jit import jit

__all__ = [
    "kept_sum", "kept_sum_reference",
    "restricted_col_sums", "restricted_col_sums_reference",
    "restricted_row_sums", "restricted_row_sums_reference",
    "row_toggle_delta", "row_toggle_delta_reference",
    "col_toggle_delta", "col_toggle_delta_reference",
    "row_swap_delta", "row_swap_delta_reference",
    "col_swap_delta", "col_swap_delta_reference",
    "apply_row_toggle", "apply_row_toggle_reference",
    "apply_col_toggle", "apply_col_toggle_reference",
    "apply_row_swap", "apply_row_swap_reference",
    "apply_col_swap", "apply_col_swap_reference",
    "top_k_sum", "top_k_sum_reference",
    "select_largest", "select_largest_reference",
]

_JIT = dict(nogil=True)


# --- full evaluation -------------------------------------------------------------------------

@jit(**_JIT)
def kept_sum(scores, rows, cols):
    """Sum of ``scores`` over ``rows x cols``. O(|R| n)."""
    n = scores.shape[1]
    kept_cols = np.empty(n, dtype=np.int64)
    k = 0
    for j in range(n):
        if cols[j]:
            kept_cols[k] = j
            k += 1
    total = 0.0
    for i in range(scores.shape[0]):
        if rows[i]:
            s = 0.0
            for t in range(k):
                s += scores[i, kept_cols[t]]
            total += s
    return total


def kept_sum_reference(scores, rows, cols):
    return float(scores[np.ix_(rows, cols)].sum(dtype=np.float64))


@jit(**_JIT)
def restricted_col_sums(scores, rows):
    """``out[j] = sum_{i in R} S[i, j]`` for every column j. O(|R| n)."""
    m, n = scores.shape
    out = np.zeros(n)
    for i in range(m):
        if rows[i]:
            for j in range(n):
                out[j] += scores[i, j]
    return out


def restricted_col_sums_reference(scores, rows):
    return scores[rows].sum(axis=0, dtype=np.float64)


@jit(**_JIT)
def restricted_row_sums(scores, cols):
    """``out[i] = sum_{j in C} S[i, j]`` for every row i. O(m n)."""
    m, n = scores.shape
    out = np.zeros(m)
    for i in range(m):
        s = 0.0
        for j in range(n):
            if cols[j]:
                s += scores[i, j]
        out[i] = s
    return out


def restricted_row_sums_reference(scores, cols):
    return scores[:, cols].sum(axis=1, dtype=np.float64)


@jit(**_JIT)
def top_k_sum(values, k):
    """Sum of the k largest entries of ``values`` (k clipped to [0, len]). O(len) expected."""
    n = values.shape[0]
    if k <= 0:
        return 0.0
    if k >= n:
        return values.sum()
    part = np.partition(values, n - k)
    return part[n - k:].sum()


@jit(**_JIT)
def select_largest(buf, k):
    """Reorder ``buf`` in place so that ``buf[:k]`` holds its k largest entries; return the k-th largest.

    Quickselect with a median-of-three pivot: O(len) expected, no allocation; 1 <= k <= len(buf).
    """
    lo, hi, target = 0, buf.shape[0] - 1, k - 1
    while lo < hi:
        a, b, c = buf[lo], buf[(lo + hi) // 2], buf[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        # buf[lo..j] >= pivot >= buf[i..hi], and buf[j+1..i-1] == pivot
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return pivot
    return buf[target]


def select_largest_reference(buf, k):
    order = np.sort(buf)[::-1]
    buf[:] = order
    return float(order[k - 1])


def top_k_sum_reference(values, k):
    if k <= 0:
        return 0.0
    return float(np.sort(values)[::-1][:k].sum())


# --- O(1) deltas of the kept sum, given maintained restricted sums -----------------------------

@jit(**_JIT)
def row_toggle_delta(rows, row_sums, i):
    """Change of the kept sum when row i is toggled (kept <-> pruned)."""
    return -row_sums[i] if rows[i] else row_sums[i]


def row_toggle_delta_reference(scores, rows, cols, i):
    after = rows.copy()
    after[i] = not after[i]
    return kept_sum_reference(scores, after, cols) - kept_sum_reference(scores, rows, cols)


@jit(**_JIT)
def col_toggle_delta(cols, col_sums, j):
    """Change of the kept sum when column j is toggled."""
    return -col_sums[j] if cols[j] else col_sums[j]


def col_toggle_delta_reference(scores, rows, cols, j):
    after = cols.copy()
    after[j] = not after[j]
    return kept_sum_reference(scores, rows, after) - kept_sum_reference(scores, rows, cols)


@jit(**_JIT)
def row_swap_delta(row_sums, out_row, in_row):
    """Change of the kept sum when kept row ``out_row`` is replaced by pruned row ``in_row``."""
    return row_sums[in_row] - row_sums[out_row]


def row_swap_delta_reference(scores, rows, cols, out_row, in_row):
    after = rows.copy()
    after[out_row], after[in_row] = False, True
    return kept_sum_reference(scores, after, cols) - kept_sum_reference(scores, rows, cols)


@jit(**_JIT)
def col_swap_delta(col_sums, out_col, in_col):
    """Change of the kept sum when kept column ``out_col`` is replaced by pruned column ``in_col``."""
    return col_sums[in_col] - col_sums[out_col]


def col_swap_delta_reference(scores, rows, cols, out_col, in_col):
    after = cols.copy()
    after[out_col], after[in_col] = False, True
    return kept_sum_reference(scores, rows, after) - kept_sum_reference(scores, rows, cols)


# --- applying a move: O(n) for a row move, O(m) for a column move -----------------------------

@jit(**_JIT)
def apply_row_toggle(scores, rows, col_sums, i):
    """Toggle row i in place and update ``col_sums`` (restricted to kept rows). O(n)."""
    n = scores.shape[1]
    if rows[i]:
        rows[i] = False
        for j in range(n):
            col_sums[j] -= scores[i, j]
    else:
        rows[i] = True
        for j in range(n):
            col_sums[j] += scores[i, j]


def apply_row_toggle_reference(scores, rows, col_sums, i):
    col_sums += -scores[i] if rows[i] else scores[i]
    rows[i] = not rows[i]


@jit(**_JIT)
def apply_col_toggle(scores_t, cols, row_sums, j):
    """Toggle column j in place and update ``row_sums`` (restricted to kept columns). O(m)."""
    m = scores_t.shape[1]
    if cols[j]:
        cols[j] = False
        for i in range(m):
            row_sums[i] -= scores_t[j, i]
    else:
        cols[j] = True
        for i in range(m):
            row_sums[i] += scores_t[j, i]


def apply_col_toggle_reference(scores_t, cols, row_sums, j):
    row_sums += -scores_t[j] if cols[j] else scores_t[j]
    cols[j] = not cols[j]


@jit(**_JIT)
def apply_row_swap(scores, rows, col_sums, out_row, in_row):
    """Replace kept row ``out_row`` by pruned row ``in_row``, updating ``col_sums``. O(n)."""
    n = scores.shape[1]
    rows[out_row] = False
    rows[in_row] = True
    for j in range(n):
        col_sums[j] += np.float64(scores[in_row, j]) - np.float64(scores[out_row, j])


def apply_row_swap_reference(scores, rows, col_sums, out_row, in_row):
    col_sums += scores[in_row].astype(np.float64) - scores[out_row]
    rows[out_row], rows[in_row] = False, True


@jit(**_JIT)
def apply_col_swap(scores_t, cols, row_sums, out_col, in_col):
    """Replace kept column ``out_col`` by pruned column ``in_col``, updating ``row_sums``. O(m)."""
    m = scores_t.shape[1]
    cols[out_col] = False
    cols[in_col] = True
    for i in range(m):
        row_sums[i] += np.float64(scores_t[in_col, i]) - np.float64(scores_t[out_col, i])


def apply_col_swap_reference(scores_t, cols, row_sums, out_col, in_col):
    row_sums += scores_t[in_col].astype(np.float64) - scores_t[out_col]
    cols[out_col], cols[in_col] = False, True
