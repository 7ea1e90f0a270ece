"""The benchmark instance library: named instances, their index of best-known values, and files.

Every named instance is defined by a generator spec (family, shape, budget, seed), so any of them can be
regenerated bit for bit. Small ones are also committed as ``.npz`` in ``instances/`` (installed as the
``rcprune.instances`` data package); large ones (real layer shapes up to 512 x 4608) are generated on
demand. ``instances/index.json`` records, per instance, the best known cost, the best proven lower bound,
whether the optimum is proven, and the method that found it.

>>> get("planted-30x40").metadata["proven"]
True
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from rcprune.matrix.generate import generate
from rcprune.files import atomic_write_bytes
from rcprune.matrix.io import load_instance, save_instance
from rcprune.matrix.model import Instance
from rcprune.validation import InvalidInstanceError
from rcprune.network.generate import get_network as _get_network, network_names as _network_names

__all__ = ["CATALOGUE", "DEFAULT_INSTANCE", "names", "spec", "get", "index", "index_path", "instance_path",
           "record", "network_names", "get_network"]

# name -> generator spec. "stored": committed as instances/<name>.npz.
CATALOGUE: dict[str, dict[str, Any]] = {}


def _add(name: str, family: str, m: int, n: int, seed: int, stored: bool, **kw: Any) -> None:
    CATALOGUE[name] = {"family": family, "m": m, "n": n, "seed": seed, "stored": stored, **kw}


for _fam, _seed in (("uniform", 11), ("gaussian", 12), ("laplace", 13)):
    _add(f"{_fam}-12x16", _fam, 12, 16, _seed, True, density=0.25)
    _add(f"{_fam}-20x200", _fam, 20, 200, _seed + 10, True, density=0.1)
    _add(f"{_fam}-40x60", _fam, 40, 60, _seed + 20, True, density=0.2)
_add("planted-30x40", "planted", 30, 40, 31, True, rows=6, cols=8)
_add("planted-64x576", "planted", 64, 576, 32, True, rows=16, cols=60)
_add("bipartite-16x24", "bipartite", 16, 24, 41, True, density=0.2, p=0.5)
_add("bipartite-30x30", "bipartite", 30, 30, 42, True, density=0.1, p=0.3)
# Shapes of real conv / linear layers (C_out x C_in*k*k) at 90% sparsity.
_add("laplace-64x576", "laplace", 64, 576, 51, True, sparsity=0.9)
_add("gaussian-64x576", "gaussian", 64, 576, 52, True, sparsity=0.9)
_add("laplace-128x1152", "laplace", 128, 1152, 53, False, sparsity=0.9)
_add("laplace-256x2304", "laplace", 256, 2304, 54, False, sparsity=0.9)
_add("laplace-512x4608", "laplace", 512, 4608, 55, False, sparsity=0.9)
_add("laplace-1000x512", "laplace", 1000, 512, 56, False, sparsity=0.9)

DEFAULT_INSTANCE = "laplace-64x576"
_INDEX_FIELDS = ("best_known_cost", "best_lower_bound", "proven", "best_method")


def names() -> list[str]:
    return list(CATALOGUE)


def spec(name: str) -> dict[str, Any]:
    if not isinstance(name, str) or name not in CATALOGUE:
        raise InvalidInstanceError(f"unknown instance {name!r}; `rcprune instances list` shows the library")
    return dict(CATALOGUE[name])


def _folder() -> Path:
    return Path(str(resources.files("rcprune.instances")))


def index_path() -> Path:
    return _folder() / "index.json"


def instance_path(name: str) -> Path:
    return _folder() / f"{name}.npz"


def index() -> dict[str, dict[str, Any]]:
    """The index: one row per instance (shape, budget, best known cost, lower bound, proven, method)."""
    path = index_path()
    stored = json.loads(path.read_text()) if path.is_file() else {}
    rows = {}
    for name, s in CATALOGUE.items():
        row = {"name": name, "family": s["family"], "shape": [s["m"], s["n"]], "stored": s["stored"]}
        row.update({k: None for k in _INDEX_FIELDS})
        row.update({k: v for k, v in stored.get(name, {}).items() if k in _INDEX_FIELDS or k == "budget"})
        rows[name] = row
    return rows


def generate_named(name: str) -> Instance:
    """Regenerate a library instance from its spec (bit for bit the committed one)."""
    s = spec(name)
    kw = {k: v for k, v in s.items() if k not in ("family", "m", "n", "seed", "stored")}
    return generate(s["family"], s["m"], s["n"], seed=s["seed"], name=name, **kw)


def get(name: str) -> Instance:
    """A library instance by name: the committed file if there is one, else generated from its seed.

    The index's best known values are merged into the instance's metadata.
    """
    path = instance_path(name)
    inst = load_instance(path) if spec(name)["stored"] and path.is_file() else generate_named(name)
    row = index()[name]
    meta = dict(inst.metadata)
    for k in _INDEX_FIELDS:
        if row.get(k) is not None:
            meta[k] = row[k]
    return inst.replace(metadata=meta)


def record(name: str, *, cost: float, method: str, lower_bound: float | None = None,
           path: Path | None = None) -> bool:
    """Update the index with a new best cost and/or lower bound; returns True if anything improved.

    ``proven`` is set when the best lower bound meets the best known cost (relative 1e-9).
    """
    path = path or index_path()
    data = json.loads(path.read_text()) if path.is_file() else {}
    inst = generate_named(name) if not instance_path(name).is_file() else load_instance(instance_path(name))
    row = data.setdefault(name, {"budget": inst.budget})
    for k, v in inst.metadata.items():  # planted instances carry their proof
        if k in _INDEX_FIELDS and row.get(k) is None:
            row[k] = v
    changed = False
    if row.get("best_known_cost") is None or cost < row["best_known_cost"] - 1e-12:
        row["best_known_cost"], row["best_method"] = float(cost), method
        changed = True
    if lower_bound is not None and (row.get("best_lower_bound") is None or lower_bound > row["best_lower_bound"] + 1e-12):
        row["best_lower_bound"] = float(lower_bound)
        changed = True
    best, lb = row["best_known_cost"], row.get("best_lower_bound")
    if lb is not None and lb > best + 1e-9 * max(1.0, abs(best)):
        raise RuntimeError(f"{name}: lower bound {lb} exceeds the best known cost {best}")
    row["proven"] = lb is not None and best - lb <= 1e-9 * max(1.0, abs(best))
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    return changed


def write_files(folder: Path | None = None) -> list[Path]:
    """(Re)write the committed ``.npz`` files of the stored instances."""
    folder = folder or _folder()
    return [save_instance(generate_named(n), folder / f"{n}.npz") for n, s in CATALOGUE.items() if s["stored"]]


def network_names() -> list[str]:
    """Names of the library's network instances (hand-built ones and ResNet-18 / ResNet-50 shapes at 50, 80,
    90 and 93% sparsity), all generated from their seed on demand (see :mod:`rcprune.network.generate`)."""
    return _network_names()


def get_network(name: str):
    """A library network instance (:class:`rcprune.NetworkInstance`) by name, generated from its seed."""
    return _get_network(name)
