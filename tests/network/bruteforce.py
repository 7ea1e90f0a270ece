"""Independent brute force for whole-network RC pruning, written from the definition only.

It reads the network's structure (layers, groups, producers, consumers) but none of rcprune's evaluation,
kernels or solvers. Two oracles:

* :func:`full_enumeration` tries every row mask and every column mask of every layer (tiny networks);
* :func:`network_brute_force` tries every row mask; for fixed rows the best e columns of a layer are its
  e live columns with the largest sums over the kept rows, and an exact dynamic program over the layers'
  kept counts spends the global budget. :func:`full_enumeration` checks it on tiny networks.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def _structure(net):
    layers = list(net.layers)
    w = np.asarray(net.weights, float)
    totals = [float(net.scores[li.name].sum()) for li in layers]
    mins = []
    lb = net.layer_budgets or {}
    maxs = []
    for li in layers:
        fixed = len(net.group(li.output).fixed)   # protected: all channels; a floor: some
        fixed_cols = int(_fixed_cols(net, li).sum())
        core = max(fixed, 1) * max(fixed_cols, 1) if fixed or fixed_cols else 0
        mins.append(max(math.ceil(net.min_density * li.rows * li.cols - 1e-9), core))
        maxs.append(lb.get(li.name, li.rows * li.cols))
    return layers, w, totals, mins, maxs


def _alive(net, row_masks):
    alive = {}
    for g in net.groups:
        if g.input:
            alive[g.name] = np.ones(g.size, bool)
        else:
            a = np.zeros(g.size, bool)
            for p in g.producers:
                a |= row_masks[p]
            alive[g.name] = a
    return alive


def _live_cols(li, alive):
    chans = np.zeros(li.in_channels, bool)
    for g, off in li.inputs:
        chans[off:off + len(alive[g])] = alive[g]
    return np.repeat(chans, li.block)


def _fixed_cols(net, li):
    """Columns a layer must keep: the blocks of its input groups' floor channels."""
    chans = np.zeros(li.in_channels, bool)
    for g, off in li.inputs:
        chans[[off + c for c in net.group(g).floor]] = True
    return np.repeat(chans, li.block)


def _column_order(li, live, colsums, fixed):
    """Live columns, the fixed ones first, then by decreasing sum (the best e columns are a prefix)."""
    idx = np.flatnonzero(live & ~fixed)
    return np.concatenate([np.flatnonzero(fixed), idx[np.argsort(-colsums[idx], kind="stable")]]).astype(int)


def _row_masks(net, layers):
    """Every combination of row masks respecting fixed rows."""
    options = []
    for li in layers:
        fixed = np.zeros(li.rows, bool)
        fixed[list(net.group(li.output).fixed)] = True
        options.append([m for m in (np.array(b, bool) for b in itertools.product((False, True), repeat=li.rows))
                        if m[fixed].all()])
    for combo in itertools.product(*options):
        yield {li.name: r for li, r in zip(layers, combo)}


def network_brute_force(net):
    """Optimal ``(cost, row_masks, col_masks)`` (dicts by layer), or ``(inf, None, None)`` if infeasible."""
    layers, w, totals, mins, maxs = _structure(net)
    budget = net.budget if net.budget is not None else sum(li.rows * li.cols for li in layers)
    best = (math.inf, None, None)
    for rows in _row_masks(net, layers):
        alive = _alive(net, rows)
        # dp[c] = best weighted kept sum with total count c; choice[l][c] = e chosen in layer l
        dp = np.full(budget + 1, -np.inf)
        dp[0] = 0.0
        choices = []
        orders = []
        for l, li in enumerate(layers):
            s = net.scores[li.name]
            live = _live_cols(li, alive)
            r = int(rows[li.name].sum())
            colsums = s[rows[li.name]].sum(axis=0)
            fixed = _fixed_cols(net, li)
            order = _column_order(li, live, colsums, fixed)
            orders.append(order)
            prefix = np.concatenate([[0.0], np.cumsum(colsums[order])])
            new = np.full(budget + 1, -np.inf)
            choice = np.full(budget + 1, -1)
            for e in range(int(fixed.sum()), len(order) + 1):
                cnt = r * e
                if cnt < mins[l] or cnt > maxs[l] or cnt > budget:
                    continue
                shifted = np.full(budget + 1, -np.inf)
                shifted[cnt:] = dp[:budget + 1 - cnt] + w[l] * prefix[e]
                better = shifted > new
                new[better] = shifted[better]
                choice[better] = e
            dp = new
            choices.append(choice)
        c = int(np.argmax(dp))
        if not np.isfinite(dp[c]):
            continue
        cost = sum(w[l] * totals[l] for l in range(len(layers))) - dp[c]
        if cost < best[0] - 1e-9:
            cols = {}
            for l in range(len(layers) - 1, -1, -1):
                li = layers[l]
                e = int(choices[l][c])
                mask = np.zeros(li.cols, bool)
                mask[orders[l][:e]] = True
                cols[li.name] = mask
                c -= int(rows[li.name].sum()) * e
            best = (float(cost), dict(rows), cols)
    return best


def evaluate_by_definition(net, rows, cols):
    """``(cost, count, feasible)`` of row / column masks from the definition."""
    layers, w, totals, mins, maxs = _structure(net)
    alive = _alive(net, rows)
    cost, count, feasible = 0.0, 0, True
    for l, li in enumerate(layers):
        if not rows[li.name][list(net.group(li.output).fixed)].all():
            feasible = False
        eff = cols[li.name] & _live_cols(li, alive)
        if not eff[_fixed_cols(net, li)].all():
            feasible = False
        s = net.scores[li.name]
        kept = s[np.ix_(rows[li.name], eff)].sum()
        cost += w[l] * (totals[l] - kept)
        c = int(rows[li.name].sum()) * int(eff.sum())
        count += c
        feasible &= mins[l] <= c <= maxs[l]
    if net.budget is not None:
        feasible &= count <= net.budget
    return float(cost), count, bool(feasible)


def full_enumeration(net):
    """Optimal cost over every row and column mask of every layer (tiny networks only)."""
    layers = list(net.layers)
    best = math.inf
    col_options = [[np.array(b, bool) for b in itertools.product((False, True), repeat=li.cols)] for li in layers]
    for rows in _row_masks(net, layers):
        for combo in itertools.product(*col_options):
            cols = {li.name: c for li, c in zip(layers, combo)}
            cost, _, feasible = evaluate_by_definition(net, rows, cols)
            if feasible and cost < best:
                best = cost
    return best


def bilinear(rows, cols, values, r, c):
    """A spend table at ``(r, c)``, interpolated from the definition (independent of rcprune's code)."""
    i = max(t for t in range(len(rows) - 1) if rows[t] <= r)
    j = max(t for t in range(len(cols) - 1) if cols[t] <= c)
    (r0, r1), (c0, c1) = rows[i:i + 2], cols[j:j + 2]
    v = values
    return ((v[i][j] * (r1 - r) * (c1 - c) + v[i + 1][j] * (r - r0) * (c1 - c) + v[i][j + 1] * (r1 - r) * (c - c0)
             + v[i + 1][j + 1] * (r - r0) * (c - c0)) / ((r1 - r0) * (c1 - c0)))


def measured_brute_force(net, spend):
    """Optimal cost under the global budget on ``sum_l spend(layer, r_l, c_l)`` (``spend`` written by
    the caller from the definition): every row mask, then every count of best live columns per layer."""
    layers, w, totals, mins, maxs = _structure(net)
    best = math.inf
    for rows in _row_masks(net, layers):
        alive = _alive(net, rows)
        per_layer = []
        for l, li in enumerate(layers):
            s = net.scores[li.name]
            r = int(rows[li.name].sum())
            sums = s[rows[li.name]].sum(axis=0)
            fixed = _fixed_cols(net, li)
            order = _column_order(li, _live_cols(li, alive), sums, fixed)
            prefix = np.concatenate([[0.0], np.cumsum(sums[order])])
            opts = [(w[l] * (totals[l] - prefix[e]), spend(li.name, r, e)) for e in range(len(order) + 1)
                    if mins[l] <= r * e <= maxs[l] and e >= fixed.sum()]
            per_layer.append(opts)
        for combo in itertools.product(*per_layer):
            if sum(sp for _, sp in combo) <= net.budget * (1 + 1e-12):
                best = min(best, sum(c for c, _ in combo))
    return best


def group_brute_force(net, spend=None):
    """Optimal ``(cost, kept channel masks by group)`` over the group space: every producer of a group
    keeps the rows of one channel set and every consumer all columns of those channels; network inputs
    and protected groups keep every channel, others any subset holding their floor. ``spend(layer, r,
    c)``, written by the caller from the definition, is what the global budget bounds (default: kept
    entries). ``(inf, None)`` if no set is feasible."""
    layers, w, totals, mins, maxs = _structure(net)
    options = []
    for g in net.groups:
        masks = [np.array(b, bool) for b in itertools.product((False, True), repeat=g.size)]
        whole = g.input or g.protected
        options.append([m for m in masks if (m.all() if whole else m[list(g.floor)].all())])
    best = (math.inf, None)
    for combo in itertools.product(*options):
        kept = {g.name: m for g, m in zip(net.groups, combo)}
        cost, total, feasible = 0.0, 0.0, True
        for l, li in enumerate(layers):
            rows = kept[li.output]
            chans = np.zeros(li.in_channels, bool)
            for g, off in li.inputs:
                chans[off:off + len(kept[g])] = kept[g]
            cols = np.repeat(chans, li.block)
            r, c = int(rows.sum()), int(cols.sum())
            cost += w[l] * (totals[l] - net.scores[li.name][np.ix_(rows, cols)].sum())
            feasible &= mins[l] <= r * c <= maxs[l]
            total += r * c if spend is None else spend(li.name, r, c)
        if net.budget is not None:
            feasible &= total <= net.budget * (1 + 1e-9) + 1e-12
        if feasible and cost < best[0]:
            best = (float(cost), kept)
    return best
