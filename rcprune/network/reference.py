"""numpy references of the network kernels (:mod:`rcprune.network.kernels`), from the definitions.

The tests hold every incremental kernel against these; nothing else calls them.
"""
from __future__ import annotations

import numpy as np

from rcprune.network.model import NetworkSolution, _input_alive, alive_channels, evaluate_network

__all__ = ["init_state_reference", "move_delta_reference"]


def init_state_reference(instance, rows: np.ndarray, cols: np.ndarray) -> dict:
    """The state's quantities from the definition, per layer with numpy."""
    sol = NetworkSolution.from_flat(instance, rows, cols)
    alive = alive_channels(instance, sol)
    out = {k: [] for k in ("cols", "row_sums", "col_sums", "kept", "n_rows", "n_cols")}
    for li in instance.layers:
        s = instance.scores[li.name]
        r = sol[li.name].rows
        c = sol[li.name].cols & _input_alive(li, alive)
        out["cols"].append(c)
        out["row_sums"].append(s[:, c].sum(axis=1))
        out["col_sums"].append(s[r].sum(axis=0))
        out["kept"].append(s[np.ix_(r, c)].sum())
        out["n_rows"].append(r.sum())
        out["n_cols"].append(c.sum())
    res = {k: np.concatenate(v) if k in ("cols", "row_sums", "col_sums") else np.array(v) for k, v in out.items()}
    res["alive"] = np.concatenate([alive[g.name] for g in instance.groups])
    res["count"] = int((res["n_rows"] * res["n_cols"]).sum())
    return res


def move_delta_reference(instance, rows: np.ndarray, cols: np.ndarray, mv_rows, mv_cols):
    """The move by the definition: toggle the rows, clear the kept columns of channels that died,
    toggle the explicit columns; evaluate before and after with :func:`rcprune.evaluate_network`.
    Returns ``(delta_cost, new_spend, feasible_after, new_rows, new_cols)`` (the spend is the kept count
    under the weights measure)."""
    before = NetworkSolution.from_flat(instance, rows, cols)
    f = instance.flat
    r2 = rows.copy()
    r2[list(mv_rows)] ^= True
    after_rows = NetworkSolution.from_flat(instance, r2, cols)
    alive_b = np.concatenate([alive_channels(instance, before)[g.name] for g in instance.groups])
    alive_a = np.concatenate([alive_channels(instance, after_rows)[g.name] for g in instance.groups])
    died = alive_b & ~alive_a & ~f.chan_input
    c2 = cols.copy()
    explicit = np.zeros(cols.shape[0], bool)
    explicit[list(mv_cols)] = True
    c2[died[f.col_chan] & ~explicit] = False
    c2[explicit] ^= True
    e0 = evaluate_network(instance, before)
    e1 = evaluate_network(instance, NetworkSolution.from_flat(instance, r2, c2))
    return e1.cost - e0.cost, e1.spend, e1.feasible, r2, c2
