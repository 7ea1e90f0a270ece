"""Plain-text tables for the command line and the benchmarks."""
from __future__ import annotations

__all__ = ["format_table"]


def format_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = "{:.4g}") -> str:
    """Plain-text table of a list of dicts."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[c for c in columns]]
    for row in rows:
        cells.append([
            "-" if row.get(c) is None else (floatfmt.format(row[c]) if isinstance(row[c], float) else str(row[c]))
            for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
