"""What a network budget counts: kept weights, multiply-adds, or measured latency.

A *measure* gives every layer a *spend* ``f_l(r, c)`` of its effective kept shape (``r`` kept rows,
``c`` kept columns of live input channels), and the global budget bounds ``sum_l f_l(r_l, c_l)``:

    f_l(r, c) = coef_l * r * c + table_l(r, c)

- ``"weights"``: ``coef_l = 1``, no table; the spend is the kept-entry count (the default).
- ``"macs"``: ``coef_l`` = the layer's output positions (``H_out * W_out`` of a conv, 1 for a linear);
  the spend is multiply-adds per sample.
- a latency measure (:func:`rcprune.torch.latency_table`): ``coef_l = 0`` and a table of measured
  milliseconds on a grid of kept shapes, interpolated bilinearly between the grid points (HALP's
  lookup table, Shen et al. 2022). ``fixed`` holds the time of everything the table does not cover
  (input, BatchNorm of protected layers, pooling, ...), so whole-model latency = ``fixed + spend``.

A table is non-negative, zero at ``r = 0`` or ``c = 0`` (a layer with no kept row or column is removed)
and non-decreasing in ``r`` and ``c`` (a smaller kept shape never costs more), so every solver may
treat dropping a row or a column as freeing budget. Evaluating a spend is O(log grid) per layer.

>>> t = SpendTable([0, 2, 4], [0, 3], [[0, 0], [0, 1.0], [0, 1.5]])
>>> float(t(3, 3)), float(t(4, 0))
(1.25, 0.0)
>>> m = Measure("latency", {"a": t}, unit="ms", fixed=0.5)
>>> m.spend("a", 2, 3)
1.0
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from rcprune.validation import InvalidInstanceError, as_array

__all__ = ["SpendTable", "Measure", "MEASURES", "measure_for"]

MEASURES = ("weights", "macs", "latency")


def _knots(values, what: str) -> np.ndarray:
    k = as_array(values, what)
    if k.ndim != 1 or k.size < 2 or not np.issubdtype(k.dtype, np.number):
        raise InvalidInstanceError(f"{what} must be a 1-d list of at least 2 integers, got {values!r}")
    if not np.all(np.isfinite(k)) or not np.array_equal(k, np.round(k)):
        raise InvalidInstanceError(f"{what} must be integers, got {k.tolist()}")
    k = k.astype(np.int64)
    if k[0] != 0 or np.any(np.diff(k) <= 0):
        raise InvalidInstanceError(f"{what} must start at 0 and increase strictly, got {k.tolist()}")
    return k


class SpendTable:
    """A layer's spend on a grid of kept shapes: ``values[i, j]`` at ``rows[i]`` kept rows and ``cols[j]``
    kept columns, bilinear in between.

    >>> t = SpendTable([0, 4], [0, 8], [[0, 0], [0, 2.0]])
    >>> float(t(2, 4))
    0.5
    """

    __slots__ = ("rows", "cols", "values")

    def __init__(self, rows, cols, values):
        r = _knots(rows, "spend table row knots")
        c = _knots(cols, "spend table column knots")
        v = np.array(as_array(values, "spend table values", dtype=np.float64))
        if v.shape != (r.size, c.size):
            raise InvalidInstanceError(f"spend table values have shape {v.shape}, expected {(r.size, c.size)} "
                                       "(row knots x column knots)")
        if not np.all(np.isfinite(v)) or v.min() < 0:
            raise InvalidInstanceError("spend table values must be finite and non-negative")
        if np.any(v[0, :] != 0) or np.any(v[:, 0] != 0):
            raise InvalidInstanceError("spend table values must be 0 at 0 rows or 0 columns (a removed layer "
                                       "costs nothing)")
        if np.any(np.diff(v, axis=0) < 0) or np.any(np.diff(v, axis=1) < 0):
            raise InvalidInstanceError("spend table values must be non-decreasing in rows and in columns "
                                       "(see SpendTable.monotone for measured tables)")
        for name, a in (("rows", r), ("cols", c), ("values", v)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    def __setattr__(self, key, value):
        raise AttributeError("SpendTable is immutable")

    @staticmethod
    def monotone(values) -> np.ndarray:
        """``values`` made non-decreasing along both axes by running maxima (measured times are noisy;
        a smaller form can always run as the larger one, so the running maximum is an honest cost)."""
        v = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
        return np.maximum.accumulate(np.maximum.accumulate(v, axis=0), axis=1)

    def __call__(self, r, c) -> np.ndarray:
        """Bilinear interpolation at ``(r, c)`` (arrays broadcast); clamped to the grid."""
        r = np.clip(np.asarray(r, dtype=np.float64), 0, self.rows[-1])
        c = np.clip(np.asarray(c, dtype=np.float64), 0, self.cols[-1])
        i = np.clip(np.searchsorted(self.rows, r, side="right") - 1, 0, self.rows.size - 2)
        j = np.clip(np.searchsorted(self.cols, c, side="right") - 1, 0, self.cols.size - 2)
        r0, r1 = self.rows[i], self.rows[i + 1]
        c0, c1 = self.cols[j], self.cols[j + 1]
        v = self.values
        num = (v[i, j] * (r1 - r) * (c1 - c) + v[i + 1, j] * (r - r0) * (c1 - c)
               + v[i, j + 1] * (r1 - r) * (c - c0) + v[i + 1, j + 1] * (r - r0) * (c - c0))
        return num / ((r1 - r0) * (c1 - c0))

    def __eq__(self, other) -> bool:
        if not isinstance(other, SpendTable):
            return NotImplemented
        return (np.array_equal(self.rows, other.rows) and np.array_equal(self.cols, other.cols)
                and np.array_equal(self.values, other.values))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpendTable({self.rows.size} x {self.cols.size} knots, max {self.values[-1, -1]:.4g})"


def _coef(v, layer: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0 <= float(v) < math.inf):
        raise InvalidInstanceError(f"measure coefficient of layer {layer!r} must be a finite non-negative "
                                   f"number, got {v!r}")
    return float(v)


class Measure:
    """Per-layer spend ``coef_l * r * c + table_l(r, c)``; see the module docstring.

    Parameters
    ----------
    name : str
        ``"weights"``, ``"macs"``, ``"latency"`` or a name of your own.
    tables : mapping layer -> SpendTable, optional
    coef : mapping layer -> float, optional
        Spend per kept entry. A layer in neither mapping spends nothing.
    unit : str
        For messages and reports (``"weights"``, ``"MACs"``, ``"ms"``).
    fixed : float
        Spend outside the prunable layers (added to whole-model figures, never pruned).
    metadata : mapping, optional
        Where the numbers come from (device, dtype, batch shape, torch version for a latency table).
    """

    __slots__ = ("name", "unit", "coef", "tables", "fixed", "metadata")

    def __init__(self, name: str, tables: Mapping[str, SpendTable] | None = None, *,
                 coef: Mapping[str, float] | None = None, unit: str = "", fixed: float = 0.0,
                 metadata: Mapping[str, Any] | None = None):
        if not isinstance(name, str) or not name:
            raise InvalidInstanceError(f"a measure needs a non-empty name, got {name!r}")
        for label, given in (("tables", tables), ("coef", coef)):
            if given is not None and not isinstance(given, Mapping):
                raise InvalidInstanceError(f"measure {label} must be a mapping layer -> value, got "
                                           f"{type(given).__name__}")
        tables = dict(tables or {})
        for layer, t in tables.items():
            if not isinstance(t, SpendTable):
                raise InvalidInstanceError(f"measure table of layer {layer!r} must be a SpendTable, "
                                           f"got {type(t).__name__}")
        coef = {k: _coef(v, k) for k, v in (coef or {}).items()}
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "unit", str(unit or name))
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "fixed", _coef(fixed, "(fixed part)"))
        object.__setattr__(self, "metadata", dict(metadata or {}))

    def __setattr__(self, key, value):
        raise AttributeError("Measure is immutable")

    @property
    def is_count(self) -> bool:
        """Whether this is the weights measure: the spend is the kept-entry count, the budget an integer
        (a MACs measure of layers with one output position each counts the same, but in MACs)."""
        return (self.name == "weights" and not self.tables and self.fixed == 0
                and all(v == 1.0 for v in self.coef.values()))

    def spend(self, layer: str, r, c):
        """Spend of ``layer`` at ``r`` kept rows and ``c`` kept columns (a float; arrays broadcast)."""
        r, c = np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)
        s = self.coef.get(layer, 0.0) * r * c
        t = self.tables.get(layer)
        if t is not None:
            s = s + t(r, c)
        return float(s) if s.ndim == 0 else s

    def least_spend(self, layer: str, rows: int, cols: int, counts, min_rows: int = 0,
                    min_cols: int = 0) -> np.ndarray:
        """Per count ``k``, the least spend of a kept shape ``r x c`` of the ``rows x cols`` layer with
        ``r * c >= k``, ``r >= min_rows`` and ``c >= min_cols`` (fixed rows and columns; then ``r, c >= 1``:
        a fixed row needs a column, a fixed column a row); ``inf`` where none exists. Since the spend grows
        with ``c``, the least shape per ``r`` has the least ``c`` allowed. O(rows * len(counts))."""
        k = np.asarray(counts, dtype=np.int64)
        min_rows, min_cols = int(min_rows), int(min_cols)
        pinned = min_rows > 0 or min_cols > 0
        best = np.where((k <= 0) & (not pinned), 0.0, np.inf)
        if not np.any(k > 0) and not pinned:
            return best
        for r in range(max(min_rows, 1), rows + 1):
            c = np.maximum(-(-k // r), max(min_cols, 1) if pinned else 0)
            ok = c <= cols
            spend = self.spend(layer, r, np.minimum(c, cols))
            best = np.where(ok & (spend < best), spend, best)
        return best

    def check_layers(self, shapes: Mapping[str, tuple[int, int]]) -> None:
        """Raise unless every named layer exists and every table covers its layer's ``rows x cols``."""
        unknown = sorted((set(self.coef) | set(self.tables)) - set(shapes))
        if unknown:
            raise InvalidInstanceError(f"measure {self.name!r} names unknown layer(s) {unknown}")
        for layer, t in self.tables.items():
            m, n = shapes[layer]
            if t.rows[-1] != m or t.cols[-1] != n:
                raise InvalidInstanceError(
                    f"measure {self.name!r}: the table of layer {layer!r} covers {t.rows[-1]} x {t.cols[-1]} kept "
                    f"rows x columns but the layer is {m} x {n} (a table made for another model or input shape?)")

    def to_json(self) -> dict:
        """A JSON-serializable description (:meth:`from_json` reads it back)."""
        return {"name": self.name, "unit": self.unit, "coef": dict(self.coef), "fixed": self.fixed,
                "metadata": dict(self.metadata),
                "tables": {k: {"rows": t.rows.tolist(), "cols": t.cols.tolist(), "values": t.values.tolist()}
                           for k, t in self.tables.items()}}

    @classmethod
    def from_json(cls, data) -> "Measure":
        """The measure :meth:`to_json` described; malformed data is an :class:`InvalidInstanceError`."""
        if not isinstance(data, dict) or not isinstance(data.get("tables", {}), dict) \
                or not isinstance(data.get("coef", {}), dict):
            raise InvalidInstanceError(f"a measure description must be a dict with 'name', 'coef' and 'tables', "
                                       f"got {type(data).__name__}")
        try:
            tables = {k: SpendTable(t["rows"], t["cols"], t["values"]) for k, t in data.get("tables", {}).items()}
        except (KeyError, TypeError) as exc:
            raise InvalidInstanceError(f"a measure table is malformed ({type(exc).__name__}: {exc})") from None
        return cls(data.get("name"), tables, coef=data.get("coef"), unit=data.get("unit", ""),
                   fixed=data.get("fixed", 0.0), metadata=data.get("metadata") or {})

    def __eq__(self, other) -> bool:
        if not isinstance(other, Measure):
            return NotImplemented
        return (self.name == other.name and self.unit == other.unit and self.coef == other.coef
                and self.tables == other.tables and self.fixed == other.fixed and self.metadata == other.metadata)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Measure({self.name!r}, unit={self.unit!r}, {len(self.coef)} coefficients, {len(self.tables)} "
                f"tables, fixed={self.fixed:.4g})")


def measure_for(measure, layers) -> Measure:
    """The :class:`Measure` a network uses: ``"weights"`` or ``"macs"`` built from the layers' facts
    (``LayerInfo.positions``), or a given :class:`Measure` checked against the layers."""
    shapes = {li.name: (li.rows, li.cols) for li in layers}
    if isinstance(measure, Measure):
        measure.check_layers(shapes)
        return measure
    if measure == "weights":
        return Measure("weights", coef={li.name: 1.0 for li in layers}, unit="weights")
    if measure == "macs":
        return Measure("macs", coef={li.name: float(li.positions) for li in layers}, unit="MACs")
    if measure == "latency":
        raise InvalidInstanceError("a latency measure is measured, not named: pass the Measure of "
                                   "rcprune.torch.latency_table(model, example_inputs).measure(extraction)")
    raise InvalidInstanceError(f"measure must be 'weights', 'macs' or a rcprune.network.measure.Measure, "
                               f"got {measure!r}")
