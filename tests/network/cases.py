"""Hand-built network instances shared by the solver tests."""
from __future__ import annotations

import numpy as np

from rcprune.network.builder import NetworkBuilder


def channel_pruning_case():
    """A network where removing whole channels (rows + consumer columns) and nothing else is optimal.

    Channels 2, 3 of ``a:out`` and 1, 2 of the residual group ``b:out`` have all-zero producer rows and
    all-zero consumer columns; everything else is positive. The budget is exactly the entries of the
    channel-pruned network, so the only cost-0 solution (up to effective columns) is channel pruning.
    Returns ``(instance, keep)`` with ``keep`` the channel masks of the optimum.
    """
    rng = np.random.default_rng(7)
    b = NetworkBuilder("channel-pruning-optimal")
    x = b.input("x", 2)
    keep_a = np.array([True, True, False, False])
    keep_b = np.array([True, False, False])

    def mat(rows_keep, cols_keep, k):
        s = rng.integers(1, 10, size=(len(rows_keep), len(cols_keep) * k)).astype(float)
        s[~rows_keep] = 0.0
        s[:, ~np.repeat(cols_keep, k)] = 0.0
        return s

    a = b.layer("a", mat(keep_a, np.ones(2, bool), 2), x, kernel=(2, 1))
    h = b.layer("b", mat(keep_b, keep_a, 2), a, kernel=(2, 1))
    s = b.layer("shortcut", mat(keep_b, keep_a, 1), a)
    g = b.add(h, s)
    c = b.layer("c", mat(keep_b, keep_b, 2), g, kernel=(2, 1))
    g = b.add(g, c)
    b.layer("fc", mat(np.ones(2, bool), keep_b, 1), g, protected=True)
    budget = 2 * 4 + 1 * 4 + 1 * 2 + 1 * 2 + 2 * 1
    return b.build(budget=budget), {"a:out": keep_a, "b:out": keep_b}
