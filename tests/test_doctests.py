"""The solver modules' doctests, which plain ``pytest --doctest-modules`` runs (solvers/ is in testpaths).

solvers/ is installed as rcprune.solvers; the InstalledSolvers plugin of tests/conftest.py makes pytest
collect its files as the modules ``import rcprune.solvers.x`` returns, never as a second top-level
package "solvers" (numba's disk cache and the modules' state would otherwise exist twice).
"""
import doctest
import importlib
import pkgutil
import sys

import pytest

import rcprune.solvers

from .conftest import SOLVERS

MODULES = sorted(m.name for m in pkgutil.walk_packages(rcprune.solvers.__path__, "rcprune.solvers.") if not m.ispkg)


def test_solver_modules_found():
    assert "rcprune.solvers.matrix.greedy_row_column" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_solver_module_has_an_example(name):
    module = importlib.import_module(name)
    examples = sum(len(t.examples) for t in doctest.DocTestFinder().find(module, name))
    assert examples > 0, f"{name} has no doctest example"


def test_solver_doctests_collected_under_installed_names(request):
    items = [i for i in request.session.items if isinstance(i, pytest.DoctestItem) and SOLVERS in i.path.parents]
    if not items:
        pytest.skip("solvers/ is not collected in this run")
    modules = {item.parent.obj for item in items}
    for module in modules:
        assert sys.modules[module.__name__] is module, module.__name__
        assert module.__name__.startswith("rcprune.solvers."), module.__name__
    for item in items:
        assert item.parent.obj.__file__ == str(item.path), item.nodeid
    if request.session.isinitpath(SOLVERS):
        # the whole of solvers/ was collected (testpaths): every module's examples are among the items
        assert set(MODULES) <= {m.__name__ for m in modules}
    assert "solvers" not in sys.modules
    assert not [name for name in sys.modules if name.startswith("solvers.")]
