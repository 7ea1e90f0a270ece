"""Instance and solution files: ``.npz`` archives read without pickle, written atomically.

An instance file holds ``scores`` (float64 matrix) and ``metadata`` (a JSON string with name, budget,
fixed shape, source, generator, seed, best known cost, best proven lower bound, method, ...).
A solution file holds ``rows`` and ``cols`` (boolean masks) and ``metadata`` (JSON).
Anything else -- truncated, garbage, pickled object arrays, wrong keys -- raises
:class:`InvalidInstanceError` naming the file and the problem.
"""
from __future__ import annotations

import io as _io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rcprune.matrix.model import Instance, Solution
from rcprune.validation import InvalidInstanceError

__all__ = ["save_instance", "load_instance", "save_solution", "load_solution", "atomic_write_bytes"]

FORMAT_VERSION = 1


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _npz_bytes(**arrays) -> bytes:
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _read_npz(path, required: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise InvalidInstanceError(f"{what} file {str(path)!r} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in required if k not in data.files]
            if missing:
                raise InvalidInstanceError(
                    f"corrupt {what} file {str(path)!r}: missing array(s) {', '.join(missing)}")
            return {k: data[k] for k in required}
    except InvalidInstanceError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InvalidInstanceError(
                f"refusing {what} file {str(path)!r}: it contains pickled objects, which rcprune never loads"
            ) from None
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: {exc}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, TypeError, RuntimeError) as exc:
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: {type(exc).__name__}: {exc}") from None


def _parse_metadata(arr: np.ndarray, path, what: str) -> dict[str, Any]:
    if arr.dtype.kind != "U" or arr.ndim != 0:
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata must be a JSON string")
    try:
        meta = json.loads(str(arr))
    except json.JSONDecodeError as exc:
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata must be a JSON object")
    return meta


def save_instance(instance: Instance, path) -> Path:
    """Save an instance atomically as ``.npz`` (scores + JSON metadata)."""
    meta = {
        "format": FORMAT_VERSION,
        "name": instance.name,
        "budget": instance.budget,
        "fixed_shape": list(instance.fixed_shape) if instance.fixed_shape else None,
        "metadata": dict(instance.metadata),
    }
    data = _npz_bytes(scores=np.asarray(instance.scores, dtype=np.float64), metadata=np.array(json.dumps(meta)))
    return atomic_write_bytes(path, data)


def load_instance(path) -> Instance:
    """Load an instance saved by :func:`save_instance` (never unpickles)."""
    arrays = _read_npz(path, ("scores", "metadata"), "instance")
    meta = _parse_metadata(arrays["metadata"], path, "instance")
    try:
        fixed = meta.get("fixed_shape")
        kwargs = {"shape": tuple(fixed)} if fixed else {"budget": meta["budget"]}
        return Instance(arrays["scores"], name=meta["name"], metadata=meta.get("metadata") or {}, **kwargs)
    except KeyError as exc:
        raise InvalidInstanceError(f"corrupt instance file {str(path)!r}: metadata lacks {exc}") from None
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid instance file {str(path)!r}: {exc}") from None


def save_solution(solution: Solution, path, metadata: dict[str, Any] | None = None) -> Path:
    """Save a solution's masks atomically as ``.npz`` with optional JSON metadata."""
    data = _npz_bytes(rows=np.asarray(solution.rows), cols=np.asarray(solution.cols),
                      metadata=np.array(json.dumps(metadata or {})))
    return atomic_write_bytes(path, data)


def load_solution(path) -> tuple[Solution, dict[str, Any]]:
    """Load ``(solution, metadata)`` saved by :func:`save_solution`."""
    arrays = _read_npz(path, ("rows", "cols", "metadata"), "solution")
    meta = _parse_metadata(arrays["metadata"], path, "solution")
    try:
        return Solution(arrays["rows"], arrays["cols"]), meta
    except InvalidInstanceError as exc:
        raise InvalidInstanceError(f"invalid solution file {str(path)!r}: {exc}") from None
