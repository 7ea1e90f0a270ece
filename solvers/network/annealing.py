"""Simulated annealing over a whole network's kept rows and columns, with coupled moves.

The chain walks from a feasible start (the global greedy by default) with moves that toggle a channel
(all its producer rows at once, which prunes or restores its consumer columns in every consumer layer),
swap two channels of a group, move budget between two layers (drop a row or column in one, add one in
another), swap or add or drop a row or column within a layer. Each move's change of the weighted cost
is exact across every layer it touches (:mod:`rcprune.network.kernels`); infeasible moves are refused,
so every state is feasible. Metropolis acceptance under geometric cooling. A heuristic: proves nothing.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from rcprune.network import kernels as nk
from rcprune.jit import jit
from rcprune.random_stream import random_below, random_uniform, stream_seed
from rcprune.network.model import NetworkInstance, NetworkSolution, check_network_solution
from rcprune.result import SolveResult, Stopwatch, make_result
from rcprune.validation import InvalidInstanceError, check_int_option, check_real_option



__all__ = ["network_annealing", "MOVE_KINDS"]

MOVE_KINDS = ("col_swap", "row_swap", "resize", "transfer", "channel")
DEFAULT_MIX = (0.15, 0.15, 0.35, 0.3, 0.05)
T0_FRACTION = 0.1           # default t0 = this fraction of the median worsening of the start
CALIBRATION_SAMPLES = 3000
CHUNK_SECONDS = 0.1
MAX_ADD = 32                 # most rows or columns one reshape or transfer move adds
MAX_DROP = 8                 # most rows or columns one reshape or transfer move drops
ADD_TOUR = 4                 # reshape and transfer additions draw from ADD_TOUR * tournament candidates
FIXED_CHUNK = 1 << 16        # proposals per chunk without a time limit (deterministic schedule)
REFRESH_EVERY = 1 << 22      # proposals between exact recomputations of the restricted sums

# --- kept-first permutations per layer, for O(1) sampling of kept / pruned rows and columns -----------

@jit(nogil=True)
def _perm_toggle(perm, pos, off, count, l, x, kept):
    """Move ``x`` across the kept / pruned boundary of layer ``l``'s segment; update ``count[l]``."""
    p = pos[x]
    if kept:  # kept -> pruned: swap with the last kept slot
        q = off[l] + count[l] - 1
        count[l] -= 1
    else:     # pruned -> kept: swap with the first pruned slot
        q = off[l] + count[l]
        count[l] += 1
    y = perm[q]
    perm[p], perm[q] = y, x
    pos[y], pos[x] = p, q


@jit(nogil=True)
def _in_move(buf, count, x):
    for t in range(count):
        if buf[t] == x:
            return True
    return False


@jit(nogil=True)
def _row_loss(net, st, i):
    """What dropping kept row ``i`` loses: its weighted restricted sum, plus the weighted kept consumer
    columns of its channel when it is the channel's last producer."""
    l = net.row_layer[i]
    loss = net.weights[l] * st.row_sums[i]
    ch = net.row_chan[i]
    if st.alive[ch] == 1 and not net.chan_input[ch]:
        for p in range(net.cons_ptr[ch], net.cons_ptr[ch + 1]):
            q = net.cons_layer[p]
            j0 = net.cons_col0[p]
            for j in range(j0, j0 + net.k[q]):
                if st.cols[j]:
                    loss += net.weights[q] * st.col_sums[j]
    return loss


@jit(nogil=True)
def _worst_kept_row(net, st, row_perm, pr, l, rng, tour):
    """The kept row losing least when dropped (:func:`_row_loss`) among ``tour`` random kept rows of
    layer l that are not fixed, or -1."""
    if pr[l] == 0:
        return -1
    best = -1
    best_loss = 0.0
    for _ in range(tour):
        i = row_perm[net.row_off[l] + random_below(rng, 0, pr[l])]
        if net.fixed_row[i]:
            continue
        loss = _row_loss(net, st, i)
        if best < 0 or loss < best_loss:
            best = i
            best_loss = loss
    return best


@jit(nogil=True)
def _best_pruned_row(net, st, sc, row_perm, pr, l, rng, tour):
    """The pruned row with the largest restricted sum among ``tour`` random ones (not yet in the move)."""
    free = net.m[l] - pr[l]
    if free == 0:
        return -1
    best = -1
    for _ in range(tour):
        i = row_perm[net.row_off[l] + pr[l] + random_below(rng, 0, free)]
        if _in_move(sc.mv_rows, sc.sizes[0], i):
            continue
        if best < 0 or st.row_sums[i] > st.row_sums[best]:
            best = i
    return best


@jit(nogil=True)
def _worst_kept_col(net, st, col_perm, pc, l, rng, tour):
    """The kept column with the smallest restricted sum among ``tour`` random kept columns of layer l
    that are not fixed, or -1."""
    if pc[l] == 0:
        return -1
    best = -1
    for _ in range(tour):
        j = col_perm[net.col_off[l] + random_below(rng, 0, pc[l])]
        if net.fixed_col[j]:
            continue
        if best < 0 or st.col_sums[j] < st.col_sums[best]:
            best = j
    return best


@jit(nogil=True)
def _best_pruned_live_col(net, st, sc, col_perm, pc, l, rng, tour):
    """The pruned column of a live channel with the largest restricted sum among ``tour`` random pruned
    columns (not yet in the move), or -1."""
    free = net.n[l] - pc[l]
    if free == 0:
        return -1
    best = -1
    for _ in range(tour):
        j = col_perm[net.col_off[l] + pc[l] + random_below(rng, 0, free)]
        ch = net.col_chan[j]
        if not (net.chan_input[ch] or st.alive[ch] > 0) or _in_move(sc.mv_cols, sc.sizes[1], j):
            continue
        if best < 0 or st.col_sums[j] > st.col_sums[best]:
            best = j
    return best


@jit(nogil=True)
def _row_layer(net, free_rows, rng):
    return net.row_layer[free_rows[random_below(rng, 0, free_rows.shape[0])]]


@jit(nogil=True)
def _col_layer(net, rng):
    return net.col_layer[random_below(rng, 0, net.col_layer.shape[0])]


@jit(nogil=True)
def _push_row(sc, i):
    sc.mv_rows[sc.sizes[0]] = i
    sc.sizes[0] += 1


@jit(nogil=True)
def _push_col(sc, j):
    sc.mv_cols[sc.sizes[1]] = j
    sc.sizes[1] += 1


@jit(nogil=True)
def _channel_rows(net, st, sc, ch, want_kept):
    """Append the producer rows of ``ch`` that are kept (``want_kept``) or pruned to the move."""
    for p in range(net.prod_ptr[ch], net.prod_ptr[ch + 1]):
        i = net.prod_row[p]
        if st.rows[i] == want_kept and not net.fixed_row[i] and sc.sizes[0] < sc.mv_rows.shape[0]:
            _push_row(sc, i)


@jit(nogil=True)
def _revive_cols(net, st, sc, ch):
    """Append every consumer column of (dead) channel ``ch`` to the move."""
    for p in range(net.cons_ptr[ch], net.cons_ptr[ch + 1]):
        l = net.cons_layer[p]
        j0 = net.cons_col0[p]
        for j in range(j0, j0 + net.k[l]):
            if not st.cols[j] and sc.sizes[1] < sc.mv_cols.shape[0]:
                _push_col(sc, j)


@jit(nogil=True)
def _random_in_group(net, st, ch, want_alive, rng):
    """A random other channel of ``ch``'s group that is alive (``want_alive``) or dead (a few tries)."""
    g = net.chan_group[ch]
    g0 = net.group_off[g]
    size = net.group_off[g + 1] - g0
    for _ in range(8):
        other = g0 + random_below(rng, 0, size)
        if other != ch and (st.alive[other] > 0) == want_alive:
            return other
    return -1


@jit(nogil=True)
def _mirror_swap(net, st, sc, a, b):
    """Kill live channel ``a`` and revive dead channel ``b`` of the same group with the same kept
    producer rows and consumer column positions (producer and consumer lists are aligned within a
    group), so the kept count barely changes."""
    pa, pb = net.prod_ptr[a], net.prod_ptr[b]
    for t in range(net.prod_ptr[a + 1] - pa):
        ia, ib = net.prod_row[pa + t], net.prod_row[pb + t]
        if st.rows[ia] and not net.fixed_row[ia]:
            _push_row(sc, ia)
            _push_row(sc, ib)
    ca, cb = net.cons_ptr[a], net.cons_ptr[b]
    for t in range(net.cons_ptr[a + 1] - ca):
        l = net.cons_layer[ca + t]
        ja, jb = net.cons_col0[ca + t], net.cons_col0[cb + t]
        for u in range(net.k[l]):
            if st.cols[ja + u] and sc.sizes[1] < sc.mv_cols.shape[0]:
                _push_col(sc, jb + u)


@jit(nogil=True)
def _drop_rows(net, st, sc, row_perm, pr, l, count, rng, tour):
    """Append up to ``count`` distinct poor kept rows of layer ``l``; returns how many."""
    got = 0
    for _ in range(2 * count):
        if got == count:
            break
        i = _worst_kept_row(net, st, row_perm, pr, l, rng, tour)
        if i < 0:
            break
        if not _in_move(sc.mv_rows, sc.sizes[0], i):
            _push_row(sc, i)
            got += 1
    return got


@jit(nogil=True)
def _drop_cols(net, st, sc, col_perm, pc, l, count, rng, tour):
    """Append up to ``count`` distinct poor kept columns of layer ``l``; returns how many."""
    got = 0
    for _ in range(2 * count):
        if got == count:
            break
        j = _worst_kept_col(net, st, col_perm, pc, l, rng, tour)
        if j < 0:
            break
        if not _in_move(sc.mv_cols, sc.sizes[1], j):
            _push_col(sc, j)
            got += 1
    return got


@jit(nogil=True)
def _add_cols(net, st, sc, col_perm, pc, l, count, rng, tour):
    """Append up to ``count`` good pruned live columns of layer ``l``; returns how many."""
    added = 0
    for _ in range(min(count, MAX_ADD)):
        j = _best_pruned_live_col(net, st, sc, col_perm, pc, l, rng, ADD_TOUR * tour)
        if j < 0:
            break
        _push_col(sc, j)
        added += 1
    return added


@jit(nogil=True)
def _add_rows(net, st, sc, row_perm, pr, l, count, rng, tour):
    added = 0
    for _ in range(min(count, MAX_ADD)):
        i = _best_pruned_row(net, st, sc, row_perm, pr, l, rng, ADD_TOUR * tour)
        if i < 0:
            break
        _push_row(sc, i)
        added += 1
    return added


@jit(nogil=True)
def _room(net, st, l):
    """Entries layer ``l`` may grow by: what the global slack pays for, within its own budget."""
    return min(nk.entries_within(net, l, net.budget[0] - st.spend[0]),
               net.max_count[l] - st.n_rows[l] * st.n_cols[l])


@jit(nogil=True)
def _propose(net, st, sc, row_perm, pr, col_perm, pc, free_rows, chans, mix, rng, tour):
    """Load a random move into ``sc``; returns its kind (0..4) or -1 when none could be drawn.

    Removals take the worst of ``tour`` random kept candidates and additions the best of ``tour``
    random pruned ones (by their restricted sums), so proposals are biased toward improving moves
    while every kept / pruned element stays reachable.
    """
    u = random_uniform(rng, 0)
    kind = 0
    acc = mix[0]
    while kind < 4 and u >= acc:
        kind += 1
        acc += mix[kind]
    has_rows = free_rows.shape[0] > 0
    if kind == 0:  # column swap within a layer
        l = _col_layer(net, rng)
        a = _worst_kept_col(net, st, col_perm, pc, l, rng, tour)
        b = _best_pruned_live_col(net, st, sc, col_perm, pc, l, rng, tour)
        if a < 0 or b < 0:
            return -1
        _push_col(sc, a)
        _push_col(sc, b)
    elif kind == 1:  # row swap within a layer
        if not has_rows:
            return -1
        l = _row_layer(net, free_rows, rng)
        a = _worst_kept_row(net, st, row_perm, pr, l, rng, tour)
        b = _best_pruned_row(net, st, sc, row_perm, pr, l, rng, tour)
        if a < 0 or b < 0:
            return -1
        _push_row(sc, a)
        _push_row(sc, b)
    elif kind == 2:  # one layer changes shape: a row for columns, a column for rows, or grows / shrinks
        v = random_uniform(rng, 0)
        rowwise = has_rows and random_uniform(rng, 0) < 0.5
        l = _row_layer(net, free_rows, rng) if rowwise else _col_layer(net, rng)
        r, e = st.n_rows[l], st.n_cols[l]
        if v < 0.25:  # shrink by one row or column
            x = _worst_kept_row(net, st, row_perm, pr, l, rng, tour) if rowwise else _worst_kept_col(net, st, col_perm, pc, l, rng, tour)
            if x < 0:
                return -1
            if rowwise:
                _push_row(sc, x)
            else:
                _push_col(sc, x)
        elif v < 0.5:  # grow by one row or column
            x = _best_pruned_row(net, st, sc, row_perm, pr, l, rng, tour) if rowwise else _best_pruned_live_col(net, st, sc, col_perm, pc, l, rng, tour)
            if x < 0:
                return -1
            if rowwise:
                _push_row(sc, x)
            else:
                _push_col(sc, x)
        elif rowwise:  # drop a few rows, add the columns the freed entries pay for
            d = _drop_rows(net, st, sc, row_perm, pr, l, 1 + random_below(rng, 0, MAX_DROP), rng, tour)
            if d == 0 or d >= r:
                return -1
            n_add = (r * e + _room(net, st, l)) // (r - d) - e
            if _add_cols(net, st, sc, col_perm, pc, l, n_add, rng, tour) == 0:
                sc.sizes[0] = 0
                return -1
        else:  # drop a few columns, add the rows the freed entries pay for
            if pr[l] == net.m[l]:  # no row left to add (all kept, or all fixed)
                return -1
            d = _drop_cols(net, st, sc, col_perm, pc, l, 1 + random_below(rng, 0, MAX_DROP), rng, tour)
            if d == 0 or d >= e:
                return -1
            n_add = (r * e + _room(net, st, l)) // (e - d) - r
            if _add_rows(net, st, sc, row_perm, pr, l, n_add, rng, tour) == 0:
                sc.sizes[1] = 0
                return -1
    elif kind == 3:  # move budget: drop rows or columns in one layer, add what they pay for in another
        drop_row = has_rows and random_uniform(rng, 0) < 0.5
        add_row = has_rows and random_uniform(rng, 0) < 0.5
        la = _row_layer(net, free_rows, rng) if drop_row else _col_layer(net, rng)
        lb = _row_layer(net, free_rows, rng) if add_row else _col_layer(net, rng)
        if la == lb:
            return -1
        want = 1 + random_below(rng, 0, MAX_DROP)
        if drop_row:
            d = _drop_rows(net, st, sc, row_perm, pr, la, want, rng, tour)
            freed = nk.layer_spend(net, la, st.n_rows[la], st.n_cols[la]) - nk.layer_spend(
                net, la, st.n_rows[la] - d, st.n_cols[la])
        else:
            d = _drop_cols(net, st, sc, col_perm, pc, la, want, rng, tour)
            freed = nk.layer_spend(net, la, st.n_rows[la], st.n_cols[la]) - nk.layer_spend(
                net, la, st.n_rows[la], st.n_cols[la] - d)
        if d == 0:
            return -1
        room = min(nk.entries_within(net, lb, net.budget[0] - st.spend[0] + freed),
                   net.max_count[lb] - st.n_rows[lb] * st.n_cols[lb])
        unit = st.n_cols[lb] if add_row else st.n_rows[lb]
        n_add = room // unit if unit > 0 else 1
        got = _add_rows(net, st, sc, row_perm, pr, lb, n_add, rng, tour) if add_row else \
            _add_cols(net, st, sc, col_perm, pc, lb, n_add, rng, tour)
        if got == 0:
            sc.sizes[0] = 0
            sc.sizes[1] = 0
            return -1
    else:  # channels: kill, revive, or swap a live and a dead channel of one group
        if chans.shape[0] == 0:
            return -1
        ch = chans[random_below(rng, 0, chans.shape[0])]
        alive = st.alive[ch] > 0
        if random_uniform(rng, 0) < 0.6:  # swap, mirrored: the dead one takes the live one's rows and columns
            other = _random_in_group(net, st, ch, not alive, rng)
            if other < 0:
                return -1
            if alive:
                _mirror_swap(net, st, sc, ch, other)
            else:
                _mirror_swap(net, st, sc, other, ch)
        elif alive:
            _channel_rows(net, st, sc, ch, True)
        else:
            _channel_rows(net, st, sc, ch, False)
            if random_uniform(rng, 0) < 0.5:
                _revive_cols(net, st, sc, ch)
        if sc.sizes[0] == 0:
            sc.sizes[1] = 0
            return -1
    return kind


@jit(nogil=True)
def _apply(net, st, sc, row_perm, row_pos, pr, col_perm, col_pos, pc, spend):
    """Update the permutations for the priced move, then apply it (which clears the scratch)."""
    for t in range(sc.sizes[0]):
        i = sc.mv_rows[t]
        _perm_toggle(row_perm, row_pos, net.row_off, pr, net.row_layer[i], i, st.rows[i])
    for t in range(sc.sizes[2]):
        j = sc.chg_cols[t]
        _perm_toggle(col_perm, col_pos, net.col_off, pc, net.col_layer[j], j, st.cols[j])
    nk.apply_move(net, st, sc, spend)


@jit(nogil=True)
def _calibrate(net, st, sc, row_perm, pr, col_perm, pc, free_rows, chans, mix, rng, tour, out):
    """Fill ``out`` with positive cost changes of random feasible proposals (nothing applied); returns
    how many were found. (No array is returned: a cached function that boxes arrays must be imported
    under one module name, and pytest's doctests import this file as ``solvers.network_annealing``.)"""
    samples = out.shape[0]
    k = 0
    for _ in range(samples * 4):
        if k == samples:
            break
        kind = _propose(net, st, sc, row_perm, pr, col_perm, pc, free_rows, chans, mix, rng, tour)
        if kind < 0:
            nk.clear_move(sc)
            continue
        delta, spend, feasible = nk.move_delta(net, st, sc)
        nk.clear_move(sc)
        if feasible and delta > 0:
            out[k] = delta
            k += 1
    return k


@jit(nogil=True)
def _chunk(net, st, sc, row_perm, row_pos, pr, col_perm, col_pos, pc, free_rows, chans, mix, rng, tour,
           best_rows, best_cols, costs, flags, stats, t_from, t_to, n_moves):
    """Run ``n_moves`` proposals, cooling geometrically from ``t_from`` to ``t_to``.

    ``costs = [current, best]``; ``flags[0]`` is 1 while the current state is a best state not yet
    copied to ``best_rows`` / ``best_cols`` (it is copied before a worsening move leaves it).
    ``stats[kind]`` counts accepted moves per kind, ``stats[5]`` all accepted moves.
    """
    ratio = t_to / t_from
    for it in range(n_moves):
        temp = t_from * ratio ** (it / n_moves)
        kind = _propose(net, st, sc, row_perm, pr, col_perm, pc, free_rows, chans, mix, rng, tour)
        if kind < 0:
            nk.clear_move(sc)
            continue
        delta, spend, feasible = nk.move_delta(net, st, sc)
        if not feasible or (delta > 0 and random_uniform(rng, 0) >= math.exp(-delta / temp)):
            nk.clear_move(sc)
            continue
        if delta > 0 and flags[0] == 1:
            best_rows[:] = st.rows
            best_cols[:] = st.cols
            flags[0] = 0
        _apply(net, st, sc, row_perm, row_pos, pr, col_perm, col_pos, pc, spend)
        costs[0] += delta
        stats[kind] += 1
        stats[5] += 1
        if costs[0] < costs[1] - 1e-12 * abs(costs[1]):
            costs[1] = costs[0]
            flags[0] = 1


def _perms(offsets: np.ndarray, mask: np.ndarray, layer_of: np.ndarray):
    """Kept-first permutation of each layer's segment, positions, and kept counts."""
    order = np.lexsort((~mask, layer_of))  # by layer, kept first, stable by id
    perm = order.astype(np.int64)
    pos = np.empty_like(perm)
    pos[perm] = np.arange(perm.shape[0])
    counts = np.bincount(layer_of[mask], minlength=offsets.shape[0] - 1).astype(np.int64)
    return perm, pos, counts


def _check_start(instance: NetworkInstance, start, seed: int, time_limit):
    if isinstance(start, NetworkSolution):
        check_network_solution(instance, start)
        return start, "solution"
    if start != "greedy":
        raise InvalidInstanceError(f"start must be 'greedy' or a rcprune.NetworkSolution, got {start!r}")
    from rcprune.solvers.network.greedy import network_greedy

    return network_greedy(instance).solution, "greedy"


def network_annealing(instance: NetworkInstance, *, seed: int = 0, time_limit: float | None = None,
                      moves: int | None = None, start="greedy", t0: float | None = None,
                      t_end: float | None = None, mix=DEFAULT_MIX, tournament: int = 8,
                      progress: bool = False) -> SolveResult:
    """Neighbouring simulated annealing over the whole network.

    Guarantee: the result is feasible and no worse than the start whenever the start is feasible (the
    best state visited is returned, and the start is visited).

    Parameters
    ----------
    instance : NetworkInstance
    seed : int
        Same seed and the same ``moves``: the same answer (a time limit alone makes the schedule, so
        the number of moves, depend on the machine).
    time_limit : float, optional
        Seconds; the schedule cools over this time (the best so far is returned, status "time_limit").
    moves : int, optional
        Total proposals; the schedule cools over them. Default: ``200 * (rows + columns)`` without a
        time limit, unbounded with one.
    start : "greedy" or NetworkSolution
        The start (columns of dead channels are cleared; an infeasible start gives an infeasible result).
    t0, t_end : float, optional
        Start and end temperatures; default: ``t0`` is 0.1 times the median worsening of random
        proposals at the start (a median worsening move is accepted with probability e^-10 at first:
        the landscape rewards a cool, nearly greedy walk), ``t_end = t0 * 1e-4``.
    mix : 5 numbers
        Proposal shares of :data:`MOVE_KINDS`: column swap, row swap, resize (a layer drops a row for the
        columns the freed entries pay for, or a column for rows, or grows or shrinks by one), transfer
        (drop a row or column in one layer, add the rows or columns it pays for in another), channel
        (kill / revive a channel in all its producers and consumers, or swap two of a group).
    tournament : int
        Removals take the worst of this many random kept candidates, additions the best of this many
        random pruned ones (by restricted sums); 1 is uniform sampling.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    SolveResult
        ``info``: ``start``, ``start_cost``, ``t0``, ``t_end``, ``accepted`` (per move kind), ``moves``.

    Notes
    -----
    Moves are priced exactly by :func:`rcprune.network.kernels.move_delta` (O(changed rows + columns +
    their products within a layer)) and applied in O(n_l) per row and O(m_l) per column; kept / pruned
    rows and columns are sampled in O(1) from kept-first permutations per layer. The restricted sums are
    recomputed exactly (O(total entries)) every 2**22 proposals, so floating drift cannot accumulate. The best state is copied only before a worsening move leaves it.

    >>> from rcprune.solvers.network.annealing import network_annealing  # the cached, canonical module
    >>> from rcprune.network.generate import chain_network
    >>> res = network_annealing(chain_network(budget=20), moves=2000, seed=1)
    >>> res.feasible, res.cost <= res.info["start_cost"]
    (True, True)
    """
    clock = Stopwatch(time_limit)
    if not isinstance(instance, NetworkInstance):
        raise InvalidInstanceError(f"expected a rcprune.NetworkInstance, got {type(instance).__name__}")
    if moves is not None:
        moves = check_int_option(moves, "moves", minimum=1)
    mix = np.asarray(mix, dtype=np.float64)
    if mix.shape != (5,) or (mix < 0).any() or not np.isfinite(mix).all() or mix.sum() <= 0:
        raise InvalidInstanceError(f"mix must be 5 non-negative numbers (shares of {', '.join(MOVE_KINDS)}), got {mix!r}")
    mix = mix / mix.sum()
    tour = check_int_option(tournament, "tournament", minimum=1)
    if t0 is not None:
        t0 = check_real_option(t0, "t0")
    if t_end is not None:
        t_end = check_real_option(t_end, "t_end")
    start_solution, start_kind = _check_start(instance, start, seed, time_limit)
    f = instance.flat
    st = nk.new_state(f)
    rows0, cols0 = start_solution.to_flat(instance)
    st.rows[:], st.cols[:] = rows0, cols0
    nk.init_state(f, st)
    sc = nk.new_scratch(f)
    row_perm, row_pos, pr = _perms(f.row_off, st.rows, f.row_layer)
    col_perm, col_pos, pc = _perms(f.col_off, st.cols, f.col_layer)
    free_rows = np.flatnonzero(~f.fixed_row).astype(np.int64)
    owner_fixed = np.zeros(f.chan_input.shape[0], bool)
    np.logical_or.at(owner_fixed, np.repeat(np.arange(owner_fixed.shape[0]), np.diff(f.prod_ptr)), f.fixed_row[f.prod_row])
    chans = np.flatnonzero(~f.chan_input & ~owner_fixed & (np.diff(f.prod_ptr) > 0)).astype(np.int64)
    rng = np.array([stream_seed(seed, 0)], dtype=np.uint64)

    const = float(f.weights @ f.totals)
    start_cost = const - float(f.weights @ st.kept)
    if t0 is None:
        sample = np.empty(CALIBRATION_SAMPLES)
        sample = sample[:_calibrate(f, st, sc, row_perm, pr, col_perm, pc, free_rows, chans, mix, rng, tour, sample)]
        t0 = T0_FRACTION * float(np.median(sample)) if sample.size else 1.0
        t0 = t0 if t0 > 0 else 1.0
    t_end = t_end if t_end is not None else t0 * 1e-4
    if t_end > t0:
        raise InvalidInstanceError(f"t_end ({t_end}) must not exceed t0 ({t0})")
    if moves is None and time_limit is None:
        moves = 200 * (f.row_off[-1] + f.col_off[-1])

    best_rows, best_cols = st.rows.copy(), st.cols.copy()
    costs = np.array([start_cost, start_cost])
    flags = np.zeros(1, np.int64)
    stats = np.zeros(6, np.int64)
    trace = [(clock.elapsed(), 0, start_cost)]
    done, chunk, refreshed = 0, (FIXED_CHUNK if time_limit is None else 2000), 0
    timed_out = False
    bar = tqdm(total=moves, disable=not progress, desc="network-annealing", unit="move")

    def fraction(moves_done: int, seconds: float) -> float:
        parts = []
        if moves is not None:
            parts.append(moves_done / moves)
        if time_limit is not None:
            parts.append(seconds / time_limit)
        return min(1.0, max(parts))

    while True:
        frac = fraction(done, clock.elapsed())
        if frac >= 1.0:
            timed_out = time_limit is not None and clock.elapsed() >= time_limit and (moves is None or done < moves)
            break
        n = chunk if moves is None else min(chunk, moves - done)
        tic = clock.elapsed()
        # the temperature at the chunk's end, by the expected progress (exact when moves drive it)
        frac_b = fraction(done + n, tic + (CHUNK_SECONDS if time_limit is not None else 0.0))
        _chunk(f, st, sc, row_perm, row_pos, pr, col_perm, col_pos, pc, free_rows, chans, mix, rng, tour,
               best_rows, best_cols, costs, flags, stats, t0 * (t_end / t0) ** frac, t0 * (t_end / t0) ** frac_b, n)
        done += n
        bar.update(n)
        if time_limit is not None:  # about CHUNK_SECONDS per chunk, and never far past the deadline
            took = max(clock.elapsed() - tic, 1e-6)
            left = max(time_limit - clock.elapsed(), 0.0)
            chunk = int(max(100, min(n * CHUNK_SECONDS / took, 4 * n + 100, n * left / took + 100)))
        if done // REFRESH_EVERY > refreshed:  # exact recomputation: no floating drift
            refreshed = done // REFRESH_EVERY
            if flags[0] == 1:
                best_rows[:], best_cols[:] = st.rows, st.cols
                flags[0] = 0
            nk.refresh_state(f, st)
            costs[0] = const - float(f.weights @ st.kept)
        if costs[1] < trace[-1][2]:
            trace.append((clock.elapsed(), done, float(costs[1])))
    bar.close()
    if flags[0] == 1:
        best_rows[:], best_cols[:] = st.rows, st.cols
    solution = NetworkSolution.from_flat(instance, best_rows, best_cols)
    info = {"start": start_kind, "start_cost": start_cost, "t0": t0, "t_end": t_end, "moves": done,
            "accepted": {k: int(v) for k, v in zip(MOVE_KINDS, stats[:5])}}
    res = make_result(instance, solution, method="network-annealing", runtime=clock.elapsed(),
                              iterations=done, timed_out=timed_out, trace=trace, seed=seed, info=info)
    return res
