"""The annealing chain's moves: which kind to propose, swap proposals, and greedy reshapes between Pareto shapes.

Each move has a numba form, used inside the chain kernel (:mod:`rcprune.solvers.matrix.annealing_chain`),
and a numpy twin that draws the same numbers from the same stream (the reference chain,
:mod:`rcprune.solvers.matrix.annealing_reference`). An axis is the tuple ``(mask, perm, pos, sums)`` of
the rows or of the columns: the keep-mask, a kept-first permutation and its inverse, and the sums
restricted to the other axis's kept entries (``row_sums`` over the kept columns, ``col_sums`` over the
kept rows).
"""
from __future__ import annotations

import numpy as np

from rcprune.jit import jit
from rcprune.matrix import kernels
from rcprune.matrix.model import Instance
from rcprune.random_stream import random_below, random_uniform

__all__ = ["ROW_SWAP", "COL_SWAP", "GROW", "SHRINK", "pareto_shapes", "move_kind", "move_kind_numpy",
           "propose_swap", "perm_swap", "select_smallest", "smallest", "reshape_delta", "reshape_delta_numpy",
           "apply_reshape"]

_JIT = dict(nogil=True, error_model="numpy")
_INLINE = dict(_JIT, inline="always")  # no per-call overhead (array refcounts) in the hot loop

ROW_SWAP, COL_SWAP, GROW, SHRINK = 0, 1, 2, 3
HEAP_SELECT_MAX = 32  # select_smallest keeps a heap for at most this many of many, else quickselect


def pareto_shapes(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """The shapes a chain visits: (r, c) with c = min(n, K // r) and r = min(m, K // c), r increasing.

    No other shape can be better (more rows or columns never keep less), and along the list c strictly
    decreases, so a reshape always trades rows for columns. A fixed-shape instance has its one shape.
    O(min(m, K)).

    >>> import rcprune
    >>> pareto_shapes(rcprune.Instance(np.ones((3, 4)), budget=5))
    (array([1, 2, 3]), array([4, 2, 1]))
    """
    if instance.fixed_shape is not None:
        r, c = instance.fixed_shape
        return np.array([r], dtype=np.int64), np.array([c], dtype=np.int64)
    m, n, k = instance.m, instance.n, instance.budget
    rows = [r for r in range(1, min(m, k) + 1) if min(m, k // min(n, k // r)) == r]
    return np.array(rows, dtype=np.int64), np.array([min(n, k // r) for r in rows], dtype=np.int64)


# --- which move: O(1) ----------------------------------------------------------------------------

@jit(**_INLINE)
def move_kind(n_shapes, shape, m, n, r, c, reshape_rate, rng):
    """ROW_SWAP, COL_SWAP, GROW or SHRINK at shape index ``shape`` (r rows, c columns kept), or -1 when
    nothing can move. A reshape with probability ``reshape_rate`` when both kinds can move; a swap is
    uniform over the r (m - r) + c (n - c) swap neighbours."""
    can_swap_row, can_swap_col = 0 < r < m, 0 < c < n
    can_grow, can_shrink = shape + 1 < n_shapes, shape > 0
    can_swap, can_reshape = can_swap_row or can_swap_col, can_grow or can_shrink
    if can_swap and can_reshape:
        reshape = random_uniform(rng, 0) < reshape_rate
    else:
        reshape = can_reshape
    if reshape:
        if can_grow and can_shrink:
            return GROW + random_below(rng, 0, 2)
        return GROW if can_grow else SHRINK
    if can_swap_row and can_swap_col:
        row_swaps, col_swaps = r * (m - r), c * (n - c)
        return ROW_SWAP if random_uniform(rng, 0) < row_swaps / (row_swaps + col_swaps) else COL_SWAP
    if can_swap_row:
        return ROW_SWAP
    return COL_SWAP if can_swap_col else -1


def move_kind_numpy(n_shapes, shape, m, n, r, c, reshape_rate, rng):
    """:func:`move_kind` drawing from a :class:`rcprune.random_stream.NumpyStream`.

    >>> from rcprune.random_stream import NumpyStream
    >>> move_kind_numpy(1, 0, 4, 6, 4, 3, 0.0, NumpyStream(1)) == COL_SWAP  # every row kept: columns only
    True
    """
    can_swap_row, can_swap_col = 0 < r < m, 0 < c < n
    can_grow, can_shrink = shape + 1 < n_shapes, shape > 0
    can_swap, can_reshape = can_swap_row or can_swap_col, can_grow or can_shrink
    reshape = rng.uniform() < reshape_rate if can_swap and can_reshape else can_reshape
    if reshape:
        if can_grow and can_shrink:
            return GROW + rng.below(2)
        return GROW if can_grow else SHRINK
    if can_swap_row and can_swap_col:
        row_swaps, col_swaps = r * (m - r), c * (n - c)
        return ROW_SWAP if rng.uniform() < row_swaps / (row_swaps + col_swaps) else COL_SWAP
    if can_swap_row:
        return ROW_SWAP
    return COL_SWAP if can_swap_col else -1


# --- swaps: proposal and delta O(1), applied in O(n) (rows) or O(m) (columns) by rcprune.matrix.kernels ---

@jit(**_INLINE)
def propose_swap(perm, kept, sums, rng):
    """A uniform kept index ``out`` and pruned index ``into`` of one axis, and the kept-sum change of
    swapping them, ``sums[into] - sums[out]``."""
    out = perm[random_below(rng, 0, kept)]
    into = perm[kept + random_below(rng, 0, perm.shape[0] - kept)]
    return out, into, sums[into] - sums[out]


@jit(**_INLINE)
def perm_swap(perm, pos, a, b):
    """Exchange a and b in the permutation ``perm`` and its inverse ``pos``. O(1)."""
    pa, pb = pos[a], pos[b]
    perm[pa], perm[pb] = b, a
    pos[a], pos[b] = pb, pa


# --- reshapes: the selection -----------------------------------------------------------------------

@jit(**_INLINE)
def _swap2(val, idx, a, b):
    val[a], val[b] = val[b], val[a]
    idx[a], idx[b] = idx[b], idx[a]


@jit(**_INLINE)
def _sift_down(val, idx, i, d):
    """Restore the max-heap order of the pairs ``val[:d]``, ``idx[:d]`` below position i."""
    v, j = val[i], idx[i]
    while True:
        child = 2 * i + 1
        if child >= d:
            break
        cv, cj = val[child], idx[child]
        if child + 1 < d and (cv < val[child + 1] or (cv == val[child + 1] and cj < idx[child + 1])):
            child += 1
            cv, cj = val[child], idx[child]
        if not (v < cv or (v == cv and j < cj)):
            break
        val[i], idx[i] = cv, cj
        i = child
    val[i], idx[i] = v, j


@jit(**_JIT)
def select_smallest(val, idx, length, d):
    """Reorder ``val[:length]`` (with ``idx``) so its d smallest (value, index) pairs come first.

    The pairs are distinct, so the chosen set is unique however it is found. Few of many (d <= 32 and
    8 d <= length, as for a reshape's columns): a max-heap of the d smallest so far, O(length) with one
    well-predicted comparison per pair, plus O(log d) per replacement. Otherwise quickselect, O(length)
    expected, its pivots from a hash of the bounds, which keeps adversarial orders (sorted runs) linear
    without drawing from the chain's random stream. The per-pair loops compare and swap in place: a helper
    taking the arrays would cost two atomic reference counts per pair.

    >>> val, idx = np.array([3.0, 1.0, 2.0, 1.0]), np.array([0, 1, 2, 3])
    >>> select_smallest(val, idx, 4, 2)
    >>> sorted(idx[:2].tolist())
    [1, 3]
    """
    if d <= 0 or d >= length:
        return
    if d <= HEAP_SELECT_MAX and 8 * d <= length:
        for i in range(d // 2 - 1, -1, -1):
            _sift_down(val, idx, i, d)
        top_val, top_idx = val[0], idx[0]
        for t in range(d, length):
            v, i = val[t], idx[t]
            if v < top_val or (v == top_val and i < top_idx):
                val[t], idx[t] = top_val, top_idx
                val[0], idx[0] = v, i
                _sift_down(val, idx, 0, d)
                top_val, top_idx = val[0], idx[0]
        return
    lo, hi, k = 0, length - 1, d - 1
    while lo < hi:
        pivot = lo + (lo * 2654435761 + hi * 40503 + 12345) % (hi - lo + 1)
        _swap2(val, idx, pivot, hi)
        pivot_val, pivot_idx = val[hi], idx[hi]
        store = lo
        for t in range(lo, hi):
            v, i = val[t], idx[t]
            if v < pivot_val or (v == pivot_val and i < pivot_idx):
                val[t], idx[t] = val[store], idx[store]
                val[store], idx[store] = v, i
                store += 1
        _swap2(val, idx, store, hi)
        if store == k:
            return
        if k < store:
            hi = store - 1
        else:
            lo = store + 1


def smallest(values: np.ndarray, labels: np.ndarray, d: int) -> np.ndarray:
    """Positions of the d smallest (value, label) pairs: a partition, then ties broken by label. O(N).

    >>> smallest(np.array([3.0, 1.0, 2.0, 1.0]), np.array([0, 1, 2, 3]), 2).tolist()
    [1, 3]
    """
    if d <= 0:
        return np.zeros(0, dtype=np.int64)
    if d >= values.shape[0]:
        return np.arange(values.shape[0])
    kth = np.partition(values, d - 1)[d - 1]
    below = np.flatnonzero(values < kth)
    ties = np.flatnonzero(values == kth)
    return np.concatenate([below, ties[np.argsort(labels[ties], kind="stable")][:d - below.shape[0]]])


# --- reshapes: delta O(m + k n) plus the selections, applied in O(k n + d m) ---------------------------

@jit(**_JIT)
def reshape_delta(scores, grow, k, d, r, c, row_axis, col_axis, buffers):
    """Greedy step to the next (grow) or previous shape, moving k rows and d columns; returns the kept-sum
    change. ``buffers = (rval, rsel, val, csel)``: the moved rows go to ``rsel[:k]``, columns to ``csel[:d]``.

    Grow adds the k pruned rows with the largest sums, then drops the d kept columns that keep the least
    with them; shrink drops the k kept rows with the smallest sums, then adds the d pruned columns that keep
    the most without them. The candidates are read from the kept-first permutations, which avoids a mask
    test per row and column.
    """
    row_perm, row_sums = row_axis[1], row_axis[3]
    col_perm, col_sums = col_axis[1], col_axis[3]
    rval, rsel, val, csel = buffers
    m, n = row_perm.shape[0], col_perm.shape[0]
    sign = 1.0 if grow else -1.0
    first, count = (r, m - r) if grow else (0, r)
    for t in range(count):
        i = row_perm[first + t]
        rval[t], rsel[t] = -sign * row_sums[i], i
    select_smallest(rval, rsel, count, k)
    delta = 0.0
    for q in range(k):
        delta += sign * row_sums[rsel[q]]
    first, count = (0, c) if grow else (c, n - c)
    for t in range(count):
        j = col_perm[first + t]
        val[t], csel[t] = col_sums[j], j
    for q in range(k):
        row = scores[rsel[q]]
        for t in range(count):
            val[t] += sign * row[csel[t]]
    for t in range(count):
        val[t] *= sign
    select_smallest(val, csel, count, d)
    for t in range(d):
        delta -= val[t]
    return delta


def reshape_delta_numpy(scores, grow: bool, k: int, d: int, rows, cols, row_sums, col_sums):
    """:func:`reshape_delta` with numpy vector operations, from the masks: (delta, moved rows, moved
    columns), both sorted."""
    sign = 1.0 if grow else -1.0
    cand = np.flatnonzero(rows != grow)
    moved_rows = np.sort(cand[smallest(-sign * row_sums[cand], cand, k)])
    cand = np.flatnonzero(cols == grow)
    vals = sign * (col_sums[cand] + sign * scores[np.ix_(moved_rows, cand)].sum(axis=0, dtype=np.float64))
    pick = smallest(vals, cand, d)
    delta = sign * row_sums[moved_rows].sum() - vals[pick].sum()
    return float(delta), moved_rows, np.sort(cand[pick])


@jit(**_JIT)
def apply_reshape(scores, scores_t, grow, r, c, row_axis, col_axis, moved_rows, moved_cols):
    """Apply a reshape from r rows and c columns kept: toggle ``moved_rows`` and ``moved_cols`` (sorted in
    place) and keep the kept-first permutations and restricted sums. O(k n + d m)."""
    rows, row_perm, row_pos, row_sums = row_axis
    cols, col_perm, col_pos, col_sums = col_axis
    moved_rows.sort()  # a canonical order: the permutations must not depend on how the selection ran
    moved_cols.sort()
    for t in range(moved_rows.shape[0]):
        i = moved_rows[t]
        kernels.apply_row_toggle(scores, rows, col_sums, i)
        perm_swap(row_perm, row_pos, i, row_perm[r + t if grow else r - t - 1])
    for t in range(moved_cols.shape[0]):
        j = moved_cols[t]
        kernels.apply_col_toggle(scores_t, cols, row_sums, j)
        perm_swap(col_perm, col_pos, j, col_perm[c - t - 1 if grow else c + t])
