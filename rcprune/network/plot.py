"""Per-layer sparsity allocation of network solutions: a table and a bar chart (PNG).

matplotlib is optional: it is imported only by :func:`plot_allocation`, which says how to install it
when it is missing.

>>> from rcprune.network.generate import chain_network
>>> from rcprune import NetworkSolution
>>> net = chain_network(budget=20)
>>> rows = allocation_table(net, {"all": NetworkSolution.full(net)})
>>> rows[0]["layer"], rows[0]["all density"]
('conv1', 1.0)
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import numpy as np

from rcprune.files import atomic_write_bytes
from rcprune.network.model import NetworkInstance, NetworkSolution, evaluate_network
from rcprune.validation import InvalidInstanceError

__all__ = ["allocation_table", "format_allocation", "plot_allocation"]


def _as_mapping(solutions) -> Mapping[str, NetworkSolution]:
    if isinstance(solutions, NetworkSolution):
        return {"solution": solutions}
    if hasattr(solutions, "solution") and isinstance(solutions.solution, NetworkSolution):
        return {getattr(solutions, "method", "") or "solution": solutions.solution}
    if isinstance(solutions, Mapping):
        out = {}
        for label, s in solutions.items():
            s = getattr(s, "solution", s)
            if not isinstance(s, NetworkSolution):
                raise InvalidInstanceError(f"{label!r}: expected a NetworkSolution or a solve result")
            out[str(label)] = s
        return out
    raise InvalidInstanceError("give a NetworkSolution, a network solve result, or a mapping label -> either")


def allocation_table(instance: NetworkInstance, solutions) -> list[dict]:
    """One row per layer: its shape and size, then per solution the kept rows x effective columns and
    the kept density (effective kept entries / entries)."""
    sols = _as_mapping(solutions)
    evs = {label: evaluate_network(instance, s) for label, s in sols.items()}
    rows = []
    for l, li in enumerate(instance.layers):
        row = {"layer": li.name, "shape": f"{li.rows}x{li.cols}", "entries": li.size}
        for label, ev in evs.items():
            le = ev.layers[l]
            row[f"{label} kept"] = f"{le.n_rows}x{le.n_cols}"
            row[f"{label} density"] = le.density
        rows.append(row)
    total = {"layer": "total", "shape": "", "entries": instance.total_entries}
    for label, ev in evs.items():
        total[f"{label} kept"] = str(ev.kept_count)
        total[f"{label} density"] = ev.density
    rows.append(total)
    return rows


def format_allocation(instance: NetworkInstance, solutions) -> str:
    """:func:`allocation_table` as plain text."""
    from rcprune.text import format_table

    return format_table(allocation_table(instance, solutions), floatfmt="{:.3f}")


def plot_allocation(instance: NetworkInstance, solutions, path, *, title: str | None = None) -> Path:
    """Bar chart of the kept density of every layer (one bar group per layer, one bar per solution)
    with the global density as a line; saved as PNG to ``path`` (non-interactive backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_allocation needs matplotlib: pip install matplotlib "
                          "(or pip install 'rcprune[torch]')") from None
    sols = _as_mapping(solutions)
    names = list(instance.layer_names)
    x = np.arange(len(names))
    width = 0.8 / max(len(sols), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4.0))
    for t, (label, s) in enumerate(sols.items()):
        ev = evaluate_network(instance, s)
        ax.bar(x + (t - (len(sols) - 1) / 2) * width, [le.density for le in ev.layers], width,
               label=f"{label} (cost {ev.cost:.4g})")
    if instance.budget is not None:
        ax.axhline(instance.budget / instance.total_entries, color="k", lw=0.8, ls="--", label="global density")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("kept density")
    ax.set_title(title or f"{instance.name}: per-layer kept density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
