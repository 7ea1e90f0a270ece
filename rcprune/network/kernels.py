"""Network cost kernels: flat index arrays, incremental state, and exact deltas of coupled moves.

A network is flattened into index arrays (:class:`FlatNetwork`): rows and columns of all layers get
global ids, channels of all groups get global ids, and CSR lists give each channel's producer rows and
consumer column blocks. The local-search state keeps, per layer, the kept rows ``R_l`` and kept columns
``C_l`` with the invariant that a column of a dead input channel is never kept (so ``C_l`` is the
*effective* column set), plus

* ``row_sums[i] = sum_{j in C_l} S_l[i, j]`` for every row of every layer,
* ``col_sums[j] = sum_{i in R_l} S_l[i, j]`` for every column of every layer,
* ``alive[ch]`` = number of kept producer rows of channel ``ch``; ``kept[l]``, ``n_rows[l]``, ``n_cols[l]``;
* ``count`` (kept entries) and ``spend``, the measure's ``sum_l f_l(n_rows[l], n_cols[l])``
  (:mod:`rcprune.network.measure`; :func:`layer_spend` evaluates one layer's coefficient and table), which
  the global budget bounds; a move's spend change is exact, from the two shapes of each layer it touches.

A *move* toggles a list of rows and a list of columns at once. Removing the last producer row of a
channel kills it and removes its kept consumer columns in every consumer layer; a revived channel's
columns stay pruned unless the move adds them. With ``D, A`` the rows removed / added and ``D', A'``
the columns removed / added in a layer, its kept sum changes by

    - sum_D row_sums + sum_A row_sums - sum_D' col_sums + sum_A' col_sums + sum_{(i, j)} s_i s_j S[i, j]

(``s = -1`` for a removal, ``+1`` for an addition, the pairs over the layer's changed rows x changed
columns): exact, in O(changes + row changes x column changes) -- including a layer that consumes its own
output group. Applying costs O(n_l) per row and O(m_l) per column. Every kernel has a numpy reference
(``*_reference``) written from the definition, which the tests compare against.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rcprune.jit import jit

__all__ = [
    "FlatNetwork", "flatten_network", "State", "Scratch", "new_state", "new_scratch", "move_capacity",
    "init_state", "move_delta", "apply_move", "clear_move",
    "refresh_state", "layer_spend", "entries_within", "spend_limit",
]


class FlatNetwork(NamedTuple):
    """Index arrays of a network (numba-friendly). Global row id = ``row_off[l] + i``, global column id
    = ``col_off[l] + j``, global channel id = ``group_off[g] + c``."""

    scores: np.ndarray      # float64, all matrices raveled, layer order
    score_off: np.ndarray   # (L+1,)
    m: np.ndarray           # rows per layer
    n: np.ndarray           # columns per layer
    k: np.ndarray           # columns per input channel
    row_off: np.ndarray     # (L+1,)
    col_off: np.ndarray     # (L+1,)
    row_layer: np.ndarray   # global row -> layer
    row_chan: np.ndarray    # global row -> global channel
    col_layer: np.ndarray   # global column -> layer
    col_chan: np.ndarray    # global column -> global channel of its input
    fixed_row: np.ndarray   # bool, global row must stay
    fixed_col: np.ndarray   # bool, global column must stay (it reads a channel floor)
    chan_input: np.ndarray  # bool, channel always alive
    chan_group: np.ndarray  # global channel -> group index
    group_off: np.ndarray   # (G+1,)
    prod_ptr: np.ndarray    # CSR: producer rows of each channel
    prod_row: np.ndarray
    cons_ptr: np.ndarray    # CSR: consumer blocks of each channel
    cons_layer: np.ndarray
    cons_col0: np.ndarray   # global id of the block's first column (k[layer] columns)
    weights: np.ndarray     # w_l
    totals: np.ndarray      # sum of scores per layer
    max_count: np.ndarray   # per-layer budget (the layer size where there is none)
    min_count: np.ndarray   # per-layer minimum
    budget: np.ndarray      # (1,) float, the largest global spend allowed (the full spend where none)
    coef: np.ndarray        # spend per kept entry of each layer (the measure's coefficients)
    tab_rptr: np.ndarray    # (L+1,) CSR: row knots of each layer's spend table (empty: no table)
    tab_rows: np.ndarray
    tab_cptr: np.ndarray    # (L+1,) CSR: column knots
    tab_cols: np.ndarray
    tab_vptr: np.ndarray    # (L+1,) CSR: table values, row-major
    tab_vals: np.ndarray
    unit: np.ndarray        # average spend per entry of each layer (full spend / size), for proposals


def flatten_network(instance) -> FlatNetwork:
    """Build the :class:`FlatNetwork` of a :class:`rcprune.NetworkInstance` (O(rows + columns))."""
    layers = instance.layers
    groups = instance.groups
    gindex = {g.name: i for i, g in enumerate(groups)}
    group_off = np.concatenate([[0], np.cumsum([g.size for g in groups])]).astype(np.int64)
    m = np.array([li.rows for li in layers], np.int64)
    n = np.array([li.cols for li in layers], np.int64)
    k = np.array([li.block for li in layers], np.int64)
    row_off = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
    col_off = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    row_layer = np.repeat(np.arange(len(layers)), m).astype(np.int64)
    col_layer = np.repeat(np.arange(len(layers)), n).astype(np.int64)
    g_start = np.array([group_off[gindex[li.output]] for li in layers], np.int64)
    row_chan = g_start[row_layer] + (np.arange(row_off[-1]) - row_off[row_layer])
    fixed_row = np.concatenate([instance.fixed_rows(li.name) for li in layers])
    fixed_col = np.concatenate([instance.fixed_cols(li.name) for li in layers])
    # one entry per (layer, input channel): its channel, its layer and the global id of its first column
    blk_chan = np.concatenate([np.concatenate([group_off[gindex[g]] + np.arange(instance.group(g).size)
                                               for g, _ in li.inputs]) for li in layers]).astype(np.int64)
    blk_layer = np.repeat(np.arange(len(layers)), [li.in_channels for li in layers]).astype(np.int64)
    blk_off = np.concatenate([np.arange(li.in_channels) * li.block for li in layers]).astype(np.int64)
    blk_col0 = col_off[blk_layer] + blk_off
    col_chan = np.repeat(blk_chan, k[blk_layer])
    n_chan = int(group_off[-1])
    # CSR by channel, in layer order within a channel (stable sorts of layer-ordered ids)
    prod_row = np.argsort(row_chan, kind="stable").astype(np.int64)
    prod_ptr = np.concatenate([[0], np.cumsum(np.bincount(row_chan, minlength=n_chan))]).astype(np.int64)
    by_chan = np.argsort(blk_chan, kind="stable")
    cons_layer, cons_col0 = blk_layer[by_chan], blk_col0[by_chan]
    cons_ptr = np.concatenate([[0], np.cumsum(np.bincount(blk_chan, minlength=n_chan))]).astype(np.int64)
    chan_input = np.zeros(n_chan, bool)
    chan_group = np.repeat(np.arange(len(groups)), [g.size for g in groups]).astype(np.int64)
    for i, g in enumerate(groups):
        chan_input[group_off[i]:group_off[i + 1]] = g.input
    measure = instance.measure
    full = float(np.sum(instance.full_spend))
    if instance.budget is None:
        budget = full if measure.is_count else spend_limit(full)
    else:
        budget = instance.budget if measure.is_count else spend_limit(instance.budget)
    coef = np.array([measure.coef.get(li.name, 0.0) for li in layers], np.float64)
    tables = [measure.tables.get(li.name) for li in layers]
    tab_rows = [t.rows if t is not None else np.zeros(0, np.int64) for t in tables]
    tab_cols = [t.cols if t is not None else np.zeros(0, np.int64) for t in tables]
    tab_vals = [t.values.ravel() if t is not None else np.zeros(0) for t in tables]
    ptr = lambda parts: np.concatenate([[0], np.cumsum([p.size for p in parts])]).astype(np.int64)  # noqa: E731
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    sizes = (m * n).astype(np.float64)
    # floored, so a layer the measure does not count is worth infinitely much per spend, never 0 / 0
    unit = np.maximum(np.asarray(instance.full_spend, np.float64) / np.maximum(sizes, 1.0), 1e-300)
    return FlatNetwork(
        scores=instance.flat_scores, score_off=instance.score_offsets.astype(np.int64), m=m, n=n, k=k,
        row_off=row_off, col_off=col_off, row_layer=row_layer, row_chan=row_chan, col_layer=col_layer,
        col_chan=col_chan, fixed_row=fixed_row, fixed_col=fixed_col, chan_input=chan_input, chan_group=chan_group,
        group_off=group_off, prod_ptr=prod_ptr, prod_row=prod_row, cons_ptr=cons_ptr, cons_layer=cons_layer,
        cons_col0=cons_col0, weights=np.asarray(instance.weights, np.float64),
        totals=np.asarray(instance.totals, np.float64), max_count=instance.layer_budget_array(),
        min_count=np.asarray(instance.min_counts, np.int64), budget=np.array([budget], np.float64),
        coef=coef, tab_rptr=ptr(tab_rows), tab_rows=cat(tab_rows, np.int64), tab_cptr=ptr(tab_cols),
        tab_cols=cat(tab_cols, np.int64), tab_vptr=ptr(tab_vals), tab_vals=cat(tab_vals, np.float64), unit=unit)


def spend_limit(budget: float) -> float:
    """The largest spend accepted under a real-valued ``budget``: incremental sums of interpolated
    times drift by rounding, so a relative slack of 1e-9 separates rounding from overspending."""
    return float(budget) * (1.0 + 1e-9) + 1e-12


@jit(nogil=True)
def _knot_cell(knots, a, b, x):
    """Index ``i`` in ``[a, b - 2]`` with ``knots[i] <= x <= knots[i + 1]`` (binary search; clamped)."""
    lo = a
    hi = b - 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if knots[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


@jit(nogil=True)
def layer_spend(net, l, r, c):
    """The measure's spend of layer ``l`` at ``r`` kept rows and ``c`` kept columns:
    ``coef_l * r * c`` plus its table, interpolated bilinearly. O(log knots)."""
    s = net.coef[l] * r * c
    a, b = net.tab_rptr[l], net.tab_rptr[l + 1]
    if b > a:
        ca, cb = net.tab_cptr[l], net.tab_cptr[l + 1]
        x = min(max(float(r), 0.0), float(net.tab_rows[b - 1]))
        y = min(max(float(c), 0.0), float(net.tab_cols[cb - 1]))
        i = _knot_cell(net.tab_rows, a, b, x)
        j = _knot_cell(net.tab_cols, ca, cb, y)
        r0, r1 = float(net.tab_rows[i]), float(net.tab_rows[i + 1])
        c0, c1 = float(net.tab_cols[j]), float(net.tab_cols[j + 1])
        nc = cb - ca
        v0 = net.tab_vptr[l] + (i - a) * nc + (j - ca)
        v00, v01 = net.tab_vals[v0], net.tab_vals[v0 + 1]
        v10, v11 = net.tab_vals[v0 + nc], net.tab_vals[v0 + nc + 1]
        s += (v00 * (r1 - x) * (c1 - y) + v10 * (x - r0) * (c1 - y) + v01 * (r1 - x) * (y - c0)
              + v11 * (x - r0) * (y - c0)) / ((r1 - r0) * (c1 - c0))
    return s


@jit(nogil=True)
def entries_within(net, l, slack):
    """Kept entries of layer ``l`` that ``slack`` spend pays for at the layer's average spend per entry
    (a proposal size, never a feasibility test), capped at the layer's size."""
    size = net.m[l] * net.n[l]
    if net.unit[l] <= 0.0:
        return size
    if slack <= 0.0:
        return 0
    x = slack / net.unit[l]
    return size if x >= size else int(x)


def move_capacity(net: FlatNetwork) -> int:
    """Column changes one channel can cause (its consumer blocks), the unit of scratch sizes."""
    widths = np.zeros(net.chan_input.shape[0], np.int64)
    np.add.at(widths, np.repeat(np.arange(widths.shape[0]), np.diff(net.cons_ptr)), net.k[net.cons_layer])
    return int(widths.max(initial=1))


class State(NamedTuple):
    """Mutable search state (see the module docstring); ``count[0]`` is the total kept entries and
    ``spend[0]`` the measure's total spend."""

    rows: np.ndarray
    cols: np.ndarray
    alive: np.ndarray
    row_sums: np.ndarray
    col_sums: np.ndarray
    kept: np.ndarray
    n_rows: np.ndarray
    n_cols: np.ndarray
    count: np.ndarray
    spend: np.ndarray


class Scratch(NamedTuple):
    """Buffers of one move: the proposed toggles and what they imply (reused, never reallocated)."""

    mv_rows: np.ndarray     # proposed row toggles (global ids)
    mv_cols: np.ndarray     # proposed column toggles (global ids)
    sizes: np.ndarray       # [n_mv_rows, n_mv_cols, n_chg_cols, n_chans, n_layers]
    chg_cols: np.ndarray    # all column changes (explicit + implied by dying channels)
    chan_delta: np.ndarray  # per channel: change of the producer count (zero outside a move)
    chans: np.ndarray       # channels touched
    col_mark: np.ndarray    # per column: in chg_cols
    dkept: np.ndarray       # per layer
    drows: np.ndarray
    dcols: np.ndarray
    layer_mark: np.ndarray
    layers: np.ndarray      # layers touched


def new_state(net: FlatNetwork) -> State:
    n_layers = net.m.shape[0]
    return State(np.zeros(net.row_off[-1], bool), np.zeros(net.col_off[-1], bool),
                 np.zeros(net.chan_input.shape[0], np.int64), np.zeros(net.row_off[-1]),
                 np.zeros(net.col_off[-1]), np.zeros(n_layers), np.zeros(n_layers, np.int64),
                 np.zeros(n_layers, np.int64), np.zeros(1, np.int64), np.zeros(1))


def new_scratch(net: FlatNetwork, max_rows: int = 64, max_cols: int | None = None) -> Scratch:
    """Buffers for moves of at most ``max_rows`` row toggles and ``max_cols`` explicit column toggles."""
    cap = move_capacity(net)
    max_cols = max_cols if max_cols is not None else 4 * cap + 64
    n_layers = net.m.shape[0]
    return Scratch(np.zeros(max_rows, np.int64), np.zeros(max_cols, np.int64), np.zeros(5, np.int64),
                   np.zeros(max_cols + max_rows * cap, np.int64), np.zeros(net.chan_input.shape[0], np.int64),
                   np.zeros(max_rows, np.int64), np.zeros(net.col_off[-1], bool), np.zeros(n_layers),
                   np.zeros(n_layers, np.int64), np.zeros(n_layers, np.int64), np.zeros(n_layers, bool),
                   np.zeros(n_layers, np.int64))


# --- full (re)computation ------------------------------------------------------------------------

@jit(nogil=True)
def init_state(net, st):
    """Fill ``st`` from its ``rows`` and ``cols``; columns of dead channels are cleared first.
    O(total entries)."""
    n_chan = net.chan_input.shape[0]
    for ch in range(n_chan):
        c = 0
        for p in range(net.prod_ptr[ch], net.prod_ptr[ch + 1]):
            if st.rows[net.prod_row[p]]:
                c += 1
        st.alive[ch] = c
    for j in range(st.cols.shape[0]):
        ch = net.col_chan[j]
        if st.cols[j] and not (net.chan_input[ch] or st.alive[ch] > 0):
            st.cols[j] = False
    refresh_state(net, st)


@jit(nogil=True)
def refresh_state(net, st):
    """Recompute the restricted sums, kept sums, counts and spend exactly from the masks (removes drift)."""
    total = 0
    spend = 0.0
    for l in range(net.m.shape[0]):
        m, n, s0, r0, c0 = net.m[l], net.n[l], net.score_off[l], net.row_off[l], net.col_off[l]
        for j in range(n):
            st.col_sums[c0 + j] = 0.0
        r = 0
        e = 0
        for j in range(n):
            if st.cols[c0 + j]:
                e += 1
        kept = 0.0
        for i in range(m):
            rs = 0.0
            base = s0 + i * n
            for j in range(n):
                if st.cols[c0 + j]:
                    rs += net.scores[base + j]
            st.row_sums[r0 + i] = rs
            if st.rows[r0 + i]:
                r += 1
                kept += rs
                for j in range(n):
                    st.col_sums[c0 + j] += net.scores[base + j]
        st.kept[l] = kept
        st.n_rows[l] = r
        st.n_cols[l] = e
        total += r * e
        spend += layer_spend(net, l, r, e)
    st.count[0] = total
    st.spend[0] = spend


# --- moves ---------------------------------------------------------------------------------------

@jit(nogil=True)
def _touch_layer(sc, l):
    if not sc.layer_mark[l]:
        sc.layer_mark[l] = True
        sc.layers[sc.sizes[4]] = l
        sc.sizes[4] += 1


@jit(nogil=True)
def _add_col_change(net, st, sc, j):
    if not sc.col_mark[j]:
        sc.col_mark[j] = True
        sc.chg_cols[sc.sizes[2]] = j
        sc.sizes[2] += 1
        l = net.col_layer[j]
        _touch_layer(sc, l)
        if st.cols[j]:
            sc.dcols[l] -= 1
        else:
            sc.dcols[l] += 1


@jit(nogil=True)
def move_delta(net, st, sc):
    """Exact change of the weighted cost of the move in ``sc.mv_rows[:sizes[0]]`` / ``sc.mv_cols[:sizes[1]]``.

    Returns ``(delta_cost, new_spend, feasible)``; feasible checks the global and per-layer budgets,
    the per-layer minima and fixed rows and columns. Leaves the implied changes in ``sc`` for :func:`apply_move`;
    call :func:`clear_move` (or ``apply_move``) before the next move. Precondition: every added column's
    channel is alive after the move, and no row or column appears twice.
    """
    feasible = True
    n_mv_rows = sc.sizes[0]
    # rows: producer-count changes per channel
    for t in range(n_mv_rows):
        i = sc.mv_rows[t]
        l = net.row_layer[i]
        _touch_layer(sc, l)
        ch = net.row_chan[i]
        if sc.chan_delta[ch] == 0:
            found = False
            for u in range(sc.sizes[3]):
                if sc.chans[u] == ch:
                    found = True
            if not found:
                sc.chans[sc.sizes[3]] = ch
                sc.sizes[3] += 1
        if st.rows[i]:
            if net.fixed_row[i]:
                feasible = False
            sc.chan_delta[ch] -= 1
            sc.drows[l] -= 1
        else:
            sc.chan_delta[ch] += 1
            sc.drows[l] += 1
    # explicit column toggles, then the kept columns of channels that die
    for t in range(sc.sizes[1]):
        j = sc.mv_cols[t]
        ch = net.col_chan[j]
        if not st.cols[j] and not (net.chan_input[ch] or st.alive[ch] + sc.chan_delta[ch] > 0):
            feasible = False  # an added column must read a live channel
        if st.cols[j] and net.fixed_col[j]:
            feasible = False
        _add_col_change(net, st, sc, j)
    for u in range(sc.sizes[3]):
        ch = sc.chans[u]
        if net.chan_input[ch]:
            continue
        if st.alive[ch] > 0 and st.alive[ch] + sc.chan_delta[ch] == 0:
            for p in range(net.cons_ptr[ch], net.cons_ptr[ch + 1]):
                l = net.cons_layer[p]
                j0 = net.cons_col0[p]
                for j in range(j0, j0 + net.k[l]):
                    if st.cols[j] and not sc.col_mark[j]:
                        _add_col_change(net, st, sc, j)
    # kept-sum changes: row and column terms, then the cross terms inside each layer
    for t in range(n_mv_rows):
        i = sc.mv_rows[t]
        l = net.row_layer[i]
        if st.rows[i]:
            sc.dkept[l] -= st.row_sums[i]
        else:
            sc.dkept[l] += st.row_sums[i]
    for t in range(sc.sizes[2]):
        j = sc.chg_cols[t]
        l = net.col_layer[j]
        if st.cols[j]:
            sc.dkept[l] -= st.col_sums[j]
        else:
            sc.dkept[l] += st.col_sums[j]
    for t in range(n_mv_rows):
        i = sc.mv_rows[t]
        l = net.row_layer[i]
        si = -1.0 if st.rows[i] else 1.0
        base = net.score_off[l] + (i - net.row_off[l]) * net.n[l] - net.col_off[l]
        for u in range(sc.sizes[2]):
            j = sc.chg_cols[u]
            if net.col_layer[j] == l:
                sj = -1.0 if st.cols[j] else 1.0
                sc.dkept[l] += si * sj * net.scores[base + j]
    # cost and constraints
    delta = 0.0
    spend = st.spend[0]
    for u in range(sc.sizes[4]):
        l = sc.layers[u]
        delta -= net.weights[l] * sc.dkept[l]
        r1 = st.n_rows[l] + sc.drows[l]
        c1 = st.n_cols[l] + sc.dcols[l]
        new = r1 * c1
        spend += layer_spend(net, l, r1, c1) - layer_spend(net, l, st.n_rows[l], st.n_cols[l])
        if new > net.max_count[l] or new < net.min_count[l]:
            feasible = False
    if spend > net.budget[0]:
        feasible = False
    return delta, spend, feasible


@jit(nogil=True)
def clear_move(sc):
    """Reset the scratch after a rejected (or applied) move. O(size of the move)."""
    for u in range(sc.sizes[3]):
        sc.chan_delta[sc.chans[u]] = 0
    for t in range(sc.sizes[2]):
        sc.col_mark[sc.chg_cols[t]] = False
    for u in range(sc.sizes[4]):
        l = sc.layers[u]
        sc.layer_mark[l] = False
        sc.dkept[l] = 0.0
        sc.drows[l] = 0
        sc.dcols[l] = 0
    for t in range(5):
        sc.sizes[t] = 0


@jit(nogil=True)
def apply_move(net, st, sc, new_spend):
    """Apply the move last priced by :func:`move_delta` and clear the scratch. O(n_l) per row toggle,
    O(m_l) per column change."""
    for t in range(sc.sizes[0]):
        i = sc.mv_rows[t]
        l = net.row_layer[i]
        n = net.n[l]
        base = net.score_off[l] + (i - net.row_off[l]) * n
        c0 = net.col_off[l]
        ch = net.row_chan[i]
        if st.rows[i]:
            st.rows[i] = False
            st.alive[ch] -= 1
            for j in range(n):
                st.col_sums[c0 + j] -= net.scores[base + j]
        else:
            st.rows[i] = True
            st.alive[ch] += 1
            for j in range(n):
                st.col_sums[c0 + j] += net.scores[base + j]
    for t in range(sc.sizes[2]):
        j = sc.chg_cols[t]
        l = net.col_layer[j]
        n = net.n[l]
        jj = j - net.col_off[l]
        base = net.score_off[l] + jj
        r0 = net.row_off[l]
        if st.cols[j]:
            st.cols[j] = False
            for i in range(net.m[l]):
                st.row_sums[r0 + i] -= net.scores[base + i * n]
        else:
            st.cols[j] = True
            for i in range(net.m[l]):
                st.row_sums[r0 + i] += net.scores[base + i * n]
    for u in range(sc.sizes[4]):
        l = sc.layers[u]
        st.kept[l] += sc.dkept[l]
        before = st.n_rows[l] * st.n_cols[l]
        st.n_rows[l] += sc.drows[l]
        st.n_cols[l] += sc.dcols[l]
        st.count[0] += st.n_rows[l] * st.n_cols[l] - before
    st.spend[0] = new_spend
    clear_move(sc)
