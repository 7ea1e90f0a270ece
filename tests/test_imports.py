"""The package's import graph: every module imports on its own, no circles, no import from a lower layer
up to a higher one (lazy imports inside functions included).

Layers, lowest first: shared utilities; the problem kinds (matrix, then network and retention); the
result type; bounds; solvers; the ``solve`` protocol; the constructions of the proofs and the torch
adapter; benchmarks; the command line. A module may import from its own layer and below.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"rcprune": ROOT / "rcprune", "rcprune.solvers": ROOT / "solvers"}

LAYERS = [
    ("rcprune.validation", "rcprune.jit", "rcprune.random_stream", "rcprune.text", "rcprune.compensation",
     "rcprune.parallel"),
    ("rcprune.files",),
    ("rcprune.matrix",),
    ("rcprune.network", "rcprune.retention", "rcprune.library"),
    ("rcprune.result",),
    ("rcprune.bounds",),
    ("rcprune.solvers",),
    ("rcprune.solve", "rcprune.certify", "rcprune.retention_task"),
    ("rcprune.theory", "rcprune.torch"),
    ("rcprune.bench",),
    ("rcprune.cli", "rcprune.__main__", "rcprune"),
]


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer"
    return rank


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (package-level names resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.startswith("rcprune") and name != module and name != "rcprune":
                found.add(name)
    return found


def graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        for target in imports(name, path, set(mods)):
            if not name.startswith(target + "."):  # a package's modules may import its __init__
                g.add_edge(name, target)
    return g


def test_no_import_circles():
    g = graph()
    assert g.number_of_edges() > 100
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles


def test_no_import_from_a_lower_layer_up():
    g = graph()
    upward = sorted((a, b) for a, b in g.edges if layer(b) > layer(a))
    assert not upward, upward


def test_the_checker_sees_a_circle_and_an_upward_import():
    assert layer("rcprune.bounds.network") < layer("rcprune.solvers.matrix.cpsat") < layer("rcprune.solve")
    assert "rcprune.matrix.model" not in graph().successors("rcprune.result")  # the result type is kind-free
    g = nx.DiGraph([("rcprune.a", "rcprune.b"), ("rcprune.b", "rcprune.a")])
    assert list(nx.simple_cycles(g))
    src = "def f():\n    from rcprune.solve import solve\n"
    tmp = ROOT / "tests" / ".import_probe.py"
    try:
        tmp.write_text(src)
        assert imports("rcprune.matrix.probe", tmp, {"rcprune.solve"}) == {"rcprune.solve"}
    finally:
        tmp.unlink()


# Forked from one interpreter that has imported these third-party packages and no rcprune module, each
# child starts as a fresh interpreter would as far as the package is concerned, without paying torch's
# import again (one subprocess per module took 3 minutes of the suite).
PRELOAD = ("numpy", "scipy", "scipy.linalg", "scipy.sparse", "networkx", "numba", "tqdm", "torch", "torchvision",
           "sklearn", "ortools.sat.python.cp_model")

CHILDREN = r"""
import importlib, os, sys, traceback
for name in sys.argv[2].split(","):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not [m for m in sys.modules if m == "rcprune" or m.startswith("rcprune.")], "a preload imported rcprune"
running, failed = {}, []
for module in sys.argv[1].split(","):
    if len(running) >= 2:
        pid, status = os.wait()
        if status:
            failed.append(running[pid])
        del running[pid]
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    running[pid] = module
while running:
    pid, status = os.wait()
    if status:
        failed.append(running[pid])
    del running[pid]
print("FAILED:" + ",".join(sorted(failed)))
"""


def import_each(names: list[str]) -> tuple[list[str], str]:
    """Import each module in its own child of an interpreter that holds no rcprune module: the failing
    modules and the children's stderr."""
    proc = subprocess.run([sys.executable, "-c", CHILDREN, ",".join(names), ",".join(PRELOAD)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0 and "FAILED:" in proc.stdout, proc.stderr[-3000:]
    failed = proc.stdout.rsplit("FAILED:", 1)[1].strip()
    return (failed.split(",") if failed else []), proc.stderr


def test_every_module_imports_on_its_own():
    """Each module in a fresh process (forked from a parent without rcprune): no module relies on another
    being imported first."""
    names = sorted(m for m in modules() if m != "rcprune.__main__")
    failed, err = import_each(names)
    assert len(names) > 60
    assert not failed, (failed, err[-3000:])


def test_the_import_check_sees_a_module_that_needs_another_first():
    """The forked check fails a module that works only after another rcprune module was imported (as it
    does in this test process)."""
    import rcprune.torch.pipeline  # noqa: F401
    probe = ROOT / "rcprune" / "_import_probe.py"
    try:
        probe.write_text("import sys\nassert 'rcprune.torch.pipeline' in sys.modules\n")
        failed, err = import_each(["rcprune.validation", "rcprune._import_probe"])
    finally:
        probe.unlink()
    assert failed == ["rcprune._import_probe"], err[-2000:]
