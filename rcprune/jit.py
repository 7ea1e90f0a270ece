"""numba compilation settings shared by every kernel and solver.

Compiled functions are cached on disk (``cache=True``) when a cache location is writable: the
package folder, ``NUMBA_CACHE_DIR``, or numba's per-user cache folder. On a read-only install with no
writable home, caching is switched off instead of failing at import (numba raises then).
"""
from __future__ import annotations

import os
from pathlib import Path

from numba import njit

__all__ = ["CACHE", "jit"]


def _cache_possible() -> bool:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return True
    if os.access(Path(__file__).resolve().parent, os.W_OK):
        return True
    try:
        from numba.misc.appdirs import AppDirs

        folder = Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except Exception:
        return False


CACHE = _cache_possible()


def jit(*args, **kwargs):
    """``numba.njit`` with rcprune's cache setting: use as ``@jit`` or ``@jit(parallel=True)``."""
    kwargs.setdefault("cache", CACHE)
    if args and callable(args[0]) and len(args) == 1 and not kwargs.keys() - {"cache"}:
        return njit(cache=kwargs["cache"])(args[0])
    return njit(*args, **kwargs)
