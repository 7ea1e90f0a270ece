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
    """``numba.njit`` with rcprune's cache setting: use as ``@jit`` or ``@jit(parallel=True)``.

    The disk cache is used only for functions of modules imported under their installed name
    (``rcprune.*``): numba keys its cache on the source file, so a cache written while a file was imported
    under another name (``solvers.x`` by a stray ``pytest solvers/x.py``) would break ``rcprune.solvers.x``.
    """
    if args and not (len(args) == 1 and callable(args[0])):
        raise TypeError("rcprune.jit takes keyword options only (no explicit signatures)")

    def decorate(fn):
        options = dict(kwargs)
        options.setdefault("cache", CACHE and fn.__module__.startswith("rcprune."))
        return njit(**options)(fn)

    return decorate(args[0]) if args else decorate
