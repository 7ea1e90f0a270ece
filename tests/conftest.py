import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

SOLVERS = Path(__file__).resolve().parents[1] / "solvers"

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session", autouse=True)
def warm_numba():
    """Compile the jitted kernels once per session so property tests time only the work."""
    from rcprune.matrix import kernels
    s = np.ones((2, 3))
    rows, cols = np.array([True, False]), np.array([True, False, True])
    kernels.kept_sum(s, rows, cols)
    kernels.restricted_col_sums(s, rows)
    kernels.restricted_row_sums(s, cols)
    kernels.top_k_sum(np.ones(3), 2)
    yield


def installed_name(path: Path) -> str:
    """``solvers/matrix/x.py`` -> ``rcprune.solvers.matrix.x`` (the package-dir mapping of pyproject.toml)."""
    parts = path.relative_to(SOLVERS).with_suffix("").parts
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("rcprune.solvers", *parts))


class InstalledSolvers:
    """Let plain ``--doctest-modules`` collect solvers/ under its installed name, rcprune.solvers.

    pytest names a file after its folders (``_pytest.pathlib.resolve_pkg_root_and_module_name``:
    solvers/x.py -> "solvers.x", in every import mode), so it would import solvers/ a second time as a
    top-level package "solvers". Here pytest's own collectors are kept, with their module preset to the
    one ``import rcprune.solvers.x`` returns, and its folders are plain ``pytest.Dir``s: a
    ``pytest.Package`` imports its ``__init__.py`` by path at setup.
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if path == SOLVERS or SOLVERS in path.parents:
            return pytest.Dir.from_parent(parent, path=path)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path, parent):
        collectors = yield
        if file_path.suffix == ".py" and SOLVERS in file_path.parents:
            module = importlib.import_module(installed_name(file_path))
            for collector in collectors:
                if isinstance(collector, pytest.Module):
                    collector.obj = module
        return collectors


def pytest_configure(config):
    # registered as a plugin, not as conftest hooks: those would apply only to files under tests/
    config.pluginmanager.register(InstalledSolvers(), "rcprune-installed-solvers")
