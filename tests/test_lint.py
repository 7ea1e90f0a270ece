"""The code has no unused imports or variables and no undefined names (ruff's pyflakes rules, configured in
pyproject.toml; ruff comes with the dev extra)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("rcprune", "solvers", "tests", "proofs", "instances")


def _need_ruff() -> None:
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.fail("ruff is missing; it comes with the dev extra: pip install -e '.[dev]'")


def test_ruff_finds_nothing():
    _need_ruff()
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_would_report_an_unused_import(tmp_path):
    _need_ruff()
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                          str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and "F401" in run.stdout
