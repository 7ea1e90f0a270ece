"""A measured latency lookup table (HALP, Shen et al. 2022): per prunable layer, the milliseconds of its
compact forms on a grid of kept shapes, timed on the layer's real input at the example batch; as a
:class:`rcprune.network.measure.Measure` it makes a network solver bound predicted latency.

A layer's spend is an upper bound of what :func:`rcprune.torch.compact` runs (at the grid points; bilinear
in between): with ``granularity="column"``, ``f(r, c) = max(min(im2col(r, c), conv(r, min(C_in, c))),
conv(r, c / block))``: partially kept channels run as the faster of the im2col GEMM and a conv over the
touched channels (``c`` kept columns touch at most ``min(C_in, c)``), whole channels as a conv over
``c / block`` channels (never more than ``min(C_in, c)``); with ``granularity="channel"`` or ``"group"`` columns come in whole channels and
``f(r, t * block) = conv(r, t)``. The activation that runs on a conv's kept rows only is timed with it, and
the BatchNorm between them as the bias ``compact`` folds it into (:mod:`rcprune.torch.latency_grid`); ``fixed`` is the rest of the measured dense model (input
layout, residual adds, pooling, ...), so the predicted whole-model latency is ``fixed + sum_l f_l(r_l, c_l)``.
With ``granularity="group"`` (every producer of a residual group keeps the same channels) a conv that
heads a residual add is priced with the add and its activation at its kept width (form ``"conv-add"``), and
the fixed part is ``fixed_group``, the rest without those adds.

Tables are cached on disk (``.npz``, no pickle) under a hash of everything the timings depend on.

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
>>> t = latency_table(m, torch.zeros(2, 2, 4, 4), repeats=1, warmup=0, cache=False)
>>> sorted(t.layers), t.layers["0"].forms["im2col"].cols.tolist()
(['0', '3'], [0, 1, 2, 4, 6, 9, 13, 18])
>>> t.measure(extract(m, torch.zeros(1, 2, 4, 4))).unit
'ms'
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from rcprune.network.granularity import check_granularity
from rcprune.files import atomic_write_bytes, npz_bytes, parse_metadata, read_npz
from rcprune.network.measure import Measure, SpendTable
from rcprune.network.model import NetworkInstance, NetworkSolution, check_network_solution
from rcprune.validation import InvalidInstanceError

from rcprune.torch import latency_grid
from rcprune.torch.compact import compact
from rcprune.torch.extract import Extraction, extract

__all__ = ["latency_table", "LatencyTable", "LayerTimes", "FormTimes", "TABLE_FORMAT"]

TABLE_FORMAT = 3   # 2: BatchNorm folded (not timed), each timed run after a warm one; 3: residual adds (group)


def _frozen(a, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class FormTimes:
    """Raw median milliseconds ``ms[i, j]`` of one form at ``rows[i]`` kept rows and ``cols[j]`` kept
    columns (input channels for ``"conv"``); 0 on the axes (a removed layer runs nothing)."""

    rows: np.ndarray
    cols: np.ndarray
    ms: np.ndarray

    def table(self) -> SpendTable:
        """The timings made monotone (:meth:`SpendTable.monotone`), interpolated bilinearly."""
        return SpendTable(self.rows, self.cols, SpendTable.monotone(self.ms))


@dataclass(frozen=True)
class LayerTimes:
    """One layer's full shape (``rows`` x ``in_channels * block`` columns) and its timed forms."""

    kind: str
    rows: int
    in_channels: int
    block: int
    forms: Mapping[str, FormTimes]

    @property
    def cols(self) -> int:
        return self.in_channels * self.block


def _instance_of(where) -> NetworkInstance:
    inst = where.instance if isinstance(where, Extraction) else where
    if not isinstance(inst, NetworkInstance):
        raise InvalidInstanceError(f"expected an Extraction or a NetworkInstance, got {type(where).__name__}")
    return inst


class LatencyTable:
    """Measured per-layer times of a model's compact forms, the model's ``fixed`` remainder and its dense
    time (:func:`latency_table` builds one). Immutable.

    Evaluating a spend or a form time is O(log grid) per layer; :meth:`measure` builds every layer's
    :class:`SpendTable` in O(grid) each.
    """

    __slots__ = ("layers", "fixed", "fixed_group", "dense_ms", "metadata")

    def __init__(self, layers: Mapping[str, LayerTimes], *, fixed: float, dense_ms: float,
                 metadata: Mapping[str, Any] | None = None, fixed_group: float | None = None):
        for k, v in (("layers", dict(layers)), ("fixed", float(fixed)), ("dense_ms", float(dense_ms)),
                     ("metadata", dict(metadata or {})),
                     ("fixed_group", float(fixed if fixed_group is None else fixed_group))):
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError("LatencyTable is immutable")

    def __repr__(self) -> str:
        return f"LatencyTable({len(self.layers)} layers, fixed={self.fixed:.4g} ms, dense={self.dense_ms:.4g} ms)"

    # --- per layer --------------------------------------------------------------------------------------

    def _layer(self, layer: str) -> LayerTimes:
        if layer not in self.layers:
            raise InvalidInstanceError(f"the latency table has no layer {layer!r} (it has {sorted(self.layers)})")
        return self.layers[layer]

    def form_times(self, layer: str, r: int, c: int, touched: int | None = None) -> dict[str, float]:
        """Predicted ms of each form of ``layer`` at ``r`` kept rows and ``c`` kept columns on ``touched``
        input channels (default ``min(C_in, c)``): ``"conv"`` (and ``"im2col"`` for kernels over 1x1) for a
        conv, ``"linear"`` for a linear layer. ``compact`` can run the fastest."""
        lt = self._layer(layer)
        if lt.kind == "linear":
            return {"linear": float(lt.forms["linear"].table()(r, c))}
        t = min(lt.in_channels, c) if touched is None else touched
        out = {"conv": float(lt.forms["conv"].table()(r, t))}
        if "im2col" in lt.forms:
            out["im2col"] = float(lt.forms["im2col"].table()(r, c))
        return out

    def spend_table(self, layer: str, granularity: str = "column") -> SpendTable:
        """``layer``'s spend over (kept rows, kept columns); see the module docstring."""
        check_granularity(granularity)
        lt = self._layer(layer)
        form = "linear" if lt.kind == "linear" else "conv-add" if granularity == "group" and "conv-add" in lt.forms \
            else "conv"
        main = lt.forms[form]
        rows, tab = main.rows, main.table()
        if granularity != "column":   # whole channels (the group space too)
            chans = main.cols if lt.kind == "conv" else np.unique(np.ceil(main.cols / lt.block)).astype(np.int64)
            c_eval = chans if lt.kind == "conv" else chans * lt.block
            return SpendTable(rows, chans * lt.block, SpendTable.monotone(tab(rows[:, None], c_eval[None, :])))
        if lt.kind == "linear":
            return tab
        if "im2col" not in lt.forms:   # 1x1: a column is a channel
            return tab
        im = lt.forms["im2col"].table()
        cols = np.union1d(im.cols, main.cols)
        r, c = rows[:, None], cols[None, :]
        partial = np.minimum(im(r, c), tab(r, np.minimum(c, lt.in_channels)))
        whole = tab(r, c / lt.block)   # whole channels always run as a conv, even where im2col would be faster
        return SpendTable(rows, cols, SpendTable.monotone(np.maximum(partial, whole)))

    # --- whole model ----------------------------------------------------------------------------------------

    def check(self, where) -> NetworkInstance:
        """The instance of ``where`` (an Extraction or a NetworkInstance), after checking it has this table's
        layers with the same shapes."""
        inst = _instance_of(where)
        names = set(inst.layer_names)
        unknown, missing = sorted(set(self.layers) - names), sorted(names - set(self.layers))
        if unknown or missing:
            raise InvalidInstanceError(f"the latency table does not match the instance: layer(s) {unknown} are not in "
                                       f"the instance, layer(s) {missing} are not in the table")
        for name, lt in self.layers.items():
            li = inst.layer(name)
            if (li.rows, li.cols, li.block) != (lt.rows, lt.cols, lt.block):
                raise InvalidInstanceError(
                    f"the latency table's layer {name!r} is {lt.rows} x {lt.cols} (block {lt.block}) but the "
                    f"instance's is {li.rows} x {li.cols} (block {li.block}): a table of another model?")
        return inst

    def measure(self, where, granularity: str = "column") -> Measure:
        """A ``"latency"`` :class:`Measure` (unit ms, ``fixed`` = this table's; ``fixed_group`` in the group
        space, whose residual adds are priced with the convs that head them) for the layers of ``where``."""
        self.check(where)
        tables = {name: self.spend_table(name, granularity) for name in self.layers}
        return Measure("latency", tables, unit="ms", fixed=self.fixed_group if granularity == "group" else self.fixed,
                       metadata=dict(self.metadata) | {"granularity": granularity, "dense_ms": self.dense_ms})

    def layer_ms(self, layer: str, rows: int, colmask: np.ndarray) -> float:
        """Predicted ms of ``layer`` with ``rows`` kept rows and effective kept columns ``colmask``
        (``in_channels x block``) in the form ``compact`` gives it: a conv over the touched channels when
        they are whole, else the faster of that and the im2col GEMM."""
        lt = self._layer(layer)
        colmask = np.asarray(colmask, bool).reshape(lt.in_channels, lt.block)
        c, touched = int(colmask.sum()), int(colmask.any(axis=1).sum())
        if rows == 0 or c == 0:
            return 0.0
        ms = self.form_times(layer, rows, c, touched)
        whole = lt.kind == "conv" and c == touched * lt.block
        return ms["conv"] if whole else min(ms.values())

    def predict(self, where, solution: NetworkSolution) -> float:
        """Predicted ms of the compacted model of ``solution``: ``fixed`` + each layer's :meth:`layer_ms`
        on its effective kept shape. O(total entries)."""
        inst = self.check(where)
        check_network_solution(inst, solution)
        eff = solution.effective(inst)
        return self.fixed + sum(self.layer_ms(n, int(eff[n].rows.sum()), eff[n].cols) for n in inst.layer_names)

    # --- files ---------------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        layers = {n: {"kind": lt.kind, "rows": lt.rows, "in_channels": lt.in_channels, "block": lt.block,
                      "forms": {f: {"rows": ft.rows.tolist(), "cols": ft.cols.tolist(), "ms": ft.ms.tolist()}
                                for f, ft in lt.forms.items()}} for n, lt in self.layers.items()}
        return {"layers": layers, "fixed": self.fixed, "fixed_group": self.fixed_group, "dense_ms": self.dense_ms,
                "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: Mapping) -> "LatencyTable":
        try:
            layers = {n: LayerTimes(d["kind"], int(d["rows"]), int(d["in_channels"]), int(d["block"]),
                                    {f: FormTimes(_frozen(v["rows"], np.int64), _frozen(v["cols"], np.int64),
                                                  _frozen(v["ms"], np.float64)) for f, v in d["forms"].items()})
                      for n, d in data["layers"].items()}
            return cls(layers, fixed=data["fixed"], dense_ms=data["dense_ms"], metadata=data["metadata"],
                       fixed_group=data.get("fixed_group"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInstanceError(f"malformed latency table ({type(exc).__name__}: {exc})") from None


# --- building one ----------------------------------------------------------------------------------------------


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device`` that can run and be timed here (cpu, or cuda when available)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInstanceError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInstanceError(f"device {device!r} cannot be timed: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidInstanceError(f"device {device!r} cannot be timed: only 'cpu' and 'cuda' are supported")
    return dev


def device_name(dev: torch.device) -> str:
    """``"cuda: <GPU name>"`` or ``"cpu: <CPU model>"``: the hardware a timing belongs to."""
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu: {model}"


MAX_REPEATS = 10_000


def _check_args(model, example_inputs, dtype, rows, cols, repeats, warmup) -> tuple[torch.Tensor, ...]:
    if not isinstance(model, nn.Module):
        raise InvalidInstanceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InvalidInstanceError("example_inputs must be a tensor or a tuple of tensors")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidInstanceError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    for name, v, low, optional in (("rows", rows, 2, True), ("cols", cols, 2, True), ("repeats", repeats, 1, False),
                                   ("warmup", warmup, 0, False)):
        if (v is not None or not optional) and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise InvalidInstanceError(f"{name} must be an integer >= {low}, got {v!r}")
    for name, v in (("repeats", repeats), ("warmup", warmup)):
        if v > MAX_REPEATS:   # a typo here would time for days
            raise InvalidInstanceError(f"{name} must be at most {MAX_REPEATS}, got {v!r}")
    return inputs


def _time_layer(probe, rows: int, cols: int, repeats: int, warmup: int, device, dtype) -> dict[str, FormTimes]:
    """Every form of ``probe`` on its grid, interleaved per kept row count (O(grid) modules alive at once)."""
    full = latency_grid.layer_forms(probe)
    rk = latency_grid.grid_knots(probe.module.weight.shape[0], rows)
    ck = {f: latency_grid.grid_knots(n, cols) for f, n in full.items()}
    ms = {f: np.zeros((rk.size, k.size)) for f, k in ck.items()}
    for i, r in enumerate(rk[1:], start=1):
        calls = {}
        for f, k in ck.items():
            calls |= latency_grid.layer_calls(probe, f, int(r), k[1:], device, dtype)
        got = latency_grid.time_calls(calls, repeats=repeats, warmup=warmup, device=device)
        for (f, _, c), t in got.items():
            ms[f][i, np.searchsorted(ck[f], c)] = t
    return {f: FormTimes(_frozen(rk, np.int64), _frozen(ck[f], np.int64), _frozen(ms[f], np.float64)) for f in ck}


def _dense_ms(model, extraction, inputs, repeats, warmup, device, dtype) -> float:
    """The dense model as ``compact`` runs it (the full solution: channels-last, the same module types)."""
    full, _ = compact(copy.deepcopy(model), NetworkSolution.full(extraction.instance), extraction)
    full = full.to(device=device, dtype=dtype).eval()
    got = latency_grid.time_calls({"dense": (full, inputs)}, repeats=max(repeats, 5), warmup=max(warmup, 1),
                                  device=device)
    return got["dense"]


def _cache_path(key: dict, cache_dir) -> Path:
    base = Path(cache_dir) if cache_dir is not None else Path(
        os.environ.get("RCPRUNE_CACHE") or Path.home() / ".cache" / "rcprune" / "latency")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return base / f"{digest}.npz"


def _load(path: Path, key: dict) -> LatencyTable | None:
    """The cached table at ``path`` if it is there, readable and made for ``key``; warns on a bad one."""
    if not path.is_file():
        return None
    try:
        arrays = read_npz(path, ("key", "table"), "latency table")
        stored = parse_metadata(arrays["key"], path, "latency table")
        if stored != json.loads(json.dumps(key)):
            warnings.warn(f"latency table cache {str(path)!r} is stale (made for another model, machine, torch "
                          "or grid); rebuilding it", stacklevel=3)
            return None
        return LatencyTable.from_json(parse_metadata(arrays["table"], path, "latency table"))
    except InvalidInstanceError as exc:
        warnings.warn(f"latency table cache {str(path)!r} is corrupt ({exc}); rebuilding it", stacklevel=3)
        return None


def _save(path: Path, key: dict, table: LatencyTable) -> None:
    atomic_write_bytes(path, npz_bytes(key=np.array(json.dumps(key, sort_keys=True)),
                                       table=np.array(json.dumps(table.to_json()))))


def latency_table(model: nn.Module, example_inputs, *, extraction: Extraction | None = None, device="cpu",
                  dtype: torch.dtype = torch.float32, rows: int | None = None, cols: int | None = None,
                  repeats: int = 5, warmup: int = 2, epilogue: bool = True, cache: bool = True, cache_dir=None,
                  progress: bool = False) -> LatencyTable:
    """Time every prunable layer's compact forms on a grid of kept shapes, and the dense model.

    Parameters
    ----------
    model : nn.Module
        Traceable (:func:`rcprune.torch.extract`); copied, never changed. Weights do not matter.
    example_inputs : Tensor or tuple of Tensors
        At the batch size the model will run at: each layer is timed on its input shape here.
    extraction : Extraction, optional
        Default: ``extract(model, example_inputs)``. The table's layers are its layers.
    device : str or torch.device
        ``"cpu"`` or ``"cuda[:i]"`` (synchronized around every timed run).
    dtype : torch.dtype
        Floating type the model and inputs are timed in.
    rows, cols : int, optional
        Knots per axis of each layer's grid (default 8 each: 0, 1 and six more, :func:`grid_knots`).
    repeats, warmup : int
        Timed and untimed runs per grid point; the median of the timed ones is kept.
    epilogue : bool
        Time each layer with the activation that consumes only its output, through a BatchNorm that
        ``compact`` folds into it (a bias): they run on its kept rows; ``False`` leaves them in ``fixed``.
    cache, cache_dir : bool, path
        Reuse a table saved under a hash of the model's layers, input shapes, device, dtype, torch version,
        threads, grid and repeats (``cache_dir``, else ``$RCPRUNE_CACHE``, else ``~/.cache/rcprune/latency``).
        A stale or corrupt file is rebuilt with a warning.
    progress : bool
        A tqdm bar over the layers.

    Returns
    -------
    LatencyTable

    Cost: per layer, ``rows * cols`` grid points per form (two forms for a conv with a kernel over 1x1), each
    run ``warmup + 2 * repeats`` times; then the dense model ``max(repeats, 5)`` times.
    """
    inputs = _check_args(model, example_inputs, dtype, rows, cols, repeats, warmup)
    rows, cols = rows or 8, cols or 8
    dev = check_device(device)
    ext = extraction if extraction is not None else extract(model, inputs)
    if not isinstance(ext, Extraction):
        raise InvalidInstanceError(f"extraction must be a rcprune.torch.Extraction, got {type(ext).__name__}")
    ext.check_model(model)
    timed = copy.deepcopy(model).to(device=dev, dtype=dtype).eval()
    tin = tuple(t.to(device=dev, dtype=dtype) if t.is_floating_point() else t.to(dev) for t in inputs)
    try:
        probes = latency_grid.probe_layers(timed, ext, tin, epilogue)
    except Exception as exc:  # noqa: BLE001 -- whatever the model raises
        raise InvalidInstanceError(f"the model cannot run on example_inputs of shape(s) "
                                   f"{[tuple(t.shape) for t in inputs]} on {dev}: {type(exc).__name__}: {exc}") from None
    meta = {"format": TABLE_FORMAT, "device": device_name(dev), "dtype": str(dtype),
            "inputs": [list(t.shape) for t in inputs], "torch": torch.__version__, "threads": torch.get_num_threads(),
            "grid": [rows, cols], "repeats": repeats, "warmup": warmup, "epilogue": bool(epilogue)}
    key = meta | {"layers": {p.name: p.signature() for p in probes}}
    path = _cache_path(key, cache_dir) if cache else None
    if path is not None and (found := _load(path, key)) is not None:
        return found
    layers = {}
    bar = tqdm(probes, desc="latency table", leave=False, disable=not progress)
    for p in bar:
        bar.set_postfix(layer=p.name, device=dev.type)
        layers[p.name] = LayerTimes(p.kind, int(p.module.weight.shape[0]), p.in_channels, p.block,
                                    _time_layer(p, rows, cols, repeats, warmup, dev, dtype))
    dense = _dense_ms(timed, ext, tin, repeats, warmup, dev, dtype)
    partial = LatencyTable(layers, fixed=0.0, dense_ms=dense, metadata=meta)
    layer_sum = partial.predict(ext, NetworkSolution.full(ext.instance))
    group = partial.measure(ext, "group")   # its residual adds priced with the convs that head them
    group_sum = float(sum(group.spend(li.name, li.rows, li.cols) for li in ext.instance.layers))
    table = LatencyTable(layers, fixed=max(dense - layer_sum, 0.0), dense_ms=dense,
                         fixed_group=max(dense - group_sum, 0.0),
                         metadata=meta | {"dense_layers_ms": layer_sum, "dense_layers_group_ms": group_sum})
    if path is not None:
        _save(path, key, table)
    return table
