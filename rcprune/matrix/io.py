"""Instance and solution files: ``.npz`` archives read without pickle, written atomically.

An instance file holds ``scores`` (float64 matrix) and ``metadata`` (a JSON string with name, budget,
fixed shape, source, generator, seed, best known cost, best proven lower bound, method, ...).
A solution file holds ``rows`` and ``cols`` (boolean masks) and ``metadata`` (JSON).
Anything else -- truncated, garbage, pickled object arrays, wrong keys -- raises
:class:`InvalidInstanceError` naming the file and the problem.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rcprune.files import atomic_write_bytes, npz_bytes, parse_metadata, read_npz
from rcprune.matrix.model import Instance, Solution
from rcprune.validation import InvalidInstanceError, check_format, check_metadata

__all__ = ["save_instance", "load_instance", "save_solution", "load_solution"]

FORMAT_VERSION = 1


def save_instance(instance: Instance, path) -> Path:
    """Save an instance atomically as ``.npz`` (scores + JSON metadata)."""
    if not isinstance(instance, Instance):
        raise InvalidInstanceError(f"expected a rcprune.Instance, got {type(instance).__name__}")
    meta = {
        "format": FORMAT_VERSION,
        "name": instance.name,
        "budget": instance.budget,
        "fixed_shape": list(instance.fixed_shape) if instance.fixed_shape else None,
        "metadata": dict(instance.metadata),
    }
    data = npz_bytes(scores=np.asarray(instance.scores, dtype=np.float64), metadata=np.array(json.dumps(meta)))
    return atomic_write_bytes(path, data)


def load_instance(path) -> Instance:
    """Load an instance saved by :func:`save_instance` (never unpickles)."""
    arrays = read_npz(path, ("scores", "metadata"), "instance")
    meta = parse_metadata(arrays["metadata"], path, "instance")
    check_format(meta, path, "instance", FORMAT_VERSION)
    try:
        fixed = meta.get("fixed_shape")
        kwargs = {"shape": fixed} if fixed is not None else {"budget": meta["budget"]}
        return Instance(arrays["scores"], name=meta["name"], metadata=meta.get("metadata") or {}, **kwargs)
    except KeyError as exc:
        raise InvalidInstanceError(f"corrupt instance file {str(path)!r}: metadata lacks {exc}") from None
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid instance file {str(path)!r}: {exc}") from None


def save_solution(solution: Solution, path, metadata: dict[str, Any] | None = None) -> Path:
    """Save a solution's masks atomically as ``.npz`` with optional JSON metadata."""
    if not isinstance(solution, Solution):
        raise InvalidInstanceError(f"expected a rcprune.Solution, got {type(solution).__name__}")
    data = npz_bytes(rows=np.asarray(solution.rows), cols=np.asarray(solution.cols),
                      metadata=np.array(json.dumps(check_metadata(metadata))), format=np.array(FORMAT_VERSION))
    return atomic_write_bytes(path, data)


def load_solution(path) -> tuple[Solution, dict[str, Any]]:
    """Load ``(solution, metadata)`` saved by :func:`save_solution`."""
    arrays = read_npz(path, ("rows", "cols", "metadata", "format"), "solution")
    meta = parse_metadata(arrays["metadata"], path, "solution")
    version = arrays["format"]
    found = int(version) if version.shape == () and version.dtype.kind in "iu" else repr(version.tolist())
    check_format({"format": found}, path, "solution", FORMAT_VERSION)
    try:
        return Solution(arrays["rows"], arrays["cols"]), meta
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid solution file {str(path)!r}: {exc}") from None
