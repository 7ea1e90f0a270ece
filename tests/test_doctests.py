"""Doctests of the solver modules, imported under their installed names (rcprune.solvers.*).

pytest's --doctest-modules would import solvers/ a second time as a top-level package "solvers",
and numba's on-disk cache would then record that name; so solvers/ is not in testpaths and its
examples run here instead. Every solver module must carry at least one example.
"""
import doctest
import importlib
import pkgutil

import pytest

import rcprune.solvers

MODULES = sorted(m.name for m in pkgutil.walk_packages(rcprune.solvers.__path__, "rcprune.solvers.") if not m.ispkg)


def test_solver_modules_found():
    assert "rcprune.solvers.matrix.greedy_row_column" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_solver_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no doctest example"
