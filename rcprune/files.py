"""Files without pickle, written atomically: ``.npz`` arrays with a JSON metadata string.

Every reader refuses pickled content and names what is wrong with a corrupt file
(:class:`rcprune.InvalidInstanceError`); every writer goes through a temporary file and a rename, so a
crash never leaves a half-written file under the target name.
"""
from __future__ import annotations

import io as _io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rcprune.validation import InvalidInstanceError

__all__ = ["atomic_write_bytes", "npz_bytes", "read_npz", "parse_metadata"]


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


def npz_bytes(**arrays) -> bytes:
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read_npz(path, required: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
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
    except Exception as exc:  # zlib, zipfile, numpy's header parser: a damaged archive fails in many ways
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: {type(exc).__name__}: {exc}") from None


def parse_metadata(arr: np.ndarray, path, what: str) -> dict[str, Any]:
    if arr.dtype.kind != "U" or arr.ndim != 0:
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata must be a JSON string")
    try:
        meta = json.loads(str(arr))
    except json.JSONDecodeError as exc:
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InvalidInstanceError(f"corrupt {what} file {str(path)!r}: metadata must be a JSON object")
    return meta
