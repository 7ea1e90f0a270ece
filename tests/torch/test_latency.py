"""Latency helpers and the layering of the PyTorch adapter: ``rcprune.torch.latency`` is a library module
(``compact`` times with it), the ResNet-18 benchmark lives in ``rcprune.bench.latency``, and no module of
``rcprune.torch`` imports a higher layer or takes part in an import circle."""
import ast
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import rcprune.torch  # noqa: E402
from rcprune.torch.latency import measure_latency  # noqa: E402
from tests.clock import simulated_clock  # noqa: E402

TORCH_DIR = Path(rcprune.torch.__file__).parent


def _rcprune_imports(path: Path) -> set[str]:
    """Every ``rcprune...`` module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rcprune"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "rcprune":
            found.add(node.module)
            # "from rcprune.torch import compact" names a submodule too
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _torch_graph() -> dict[str, set[str]]:
    mods = {f"rcprune.torch.{p.stem}": p for p in TORCH_DIR.glob("*.py") if p.stem != "__init__"}
    return {m: _rcprune_imports(p) for m, p in mods.items()}


def test_latency_module_imports_nothing_of_rcprune():
    assert _torch_graph()["rcprune.torch.latency"] == set()


def test_torch_modules_import_no_higher_layer():
    for mod, imports in _torch_graph().items():
        bad = {i for i in imports if i == "rcprune" or i.startswith(("rcprune.bench", "rcprune.cli"))}
        assert not bad, f"{mod} imports {bad}"


def test_torch_modules_have_no_import_circle():
    graph = _torch_graph()
    edges = {m: {i for i in imps if i in graph and i != m} for m, imps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(edges[m]):
            assert state.get(n) != 1, "import circle: " + " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])
    assert "rcprune.torch.latency" in edges["rcprune.torch.compact"]   # the direction the circle was broken in


def test_measure_latency_times_every_model_in_milliseconds():
    models = {"a": torch.nn.Linear(4, 4), "b": torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())}
    ms = measure_latency(models, torch.zeros(3, 4), repeats=2, warmup=1)
    assert set(ms) == {"a", "b"} and all(t > 0 for t in ms.values())   # real timings: no value to compare
    assert not models["a"].training   # measured in eval mode


class _Takes(torch.nn.Module):
    """A forward that takes the next of ``seconds`` on a simulated clock."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, list(seconds)

    def forward(self, x):
        self.clock.advance(self.seconds.pop(0))
        return x


def test_measure_latency_is_the_median_of_the_timed_forwards(monkeypatch):
    """Simulated clock: the warm-up forward (first value) is not timed; the result is the median in ms."""
    import rcprune.torch.latency as latency

    clock = simulated_clock(monkeypatch, latency)
    models = {"a": _Takes(clock, [0.5, 0.001, 0.009, 0.002]), "b": _Takes(clock, [0.5, 0.006, 0.004, 0.005])}
    ms = measure_latency(models, torch.zeros(1), repeats=3, warmup=1)
    assert ms == pytest.approx({"a": 2.0, "b": 5.0}, rel=1e-9)
    assert all(not m.seconds for m in models.values())   # 1 warm-up + 3 timed forwards each


def test_bench_resnet18_rows():
    pytest.importorskip("torchvision")
    from rcprune.bench.latency import BENCH_VARIANTS, bench_resnet18

    assert "auto" in BENCH_VARIANTS and "auto-timed" in BENCH_VARIANTS
    rows = bench_resnet18(0.9, batch=2, size=32, repeats=1, variants=("auto", "auto-timed"))
    by_model = {r["model"]: r for r in rows}
    assert set(by_model) == {"dense", "dense-cl", "rc-auto", "rc-auto-timed"}
    assert by_model["dense"]["speedup"] == 1 and by_model["dense"]["mac_ratio"] == 1
    import torchvision

    dense_weights = sum(m.weight.numel() for m in torchvision.models.resnet18(num_classes=10).modules()
                        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    auto, timed = by_model["rc-auto"], by_model["rc-auto-timed"]
    # one solution compacted two ways: the same kept weights, within the 10% budget, and the same dense MACs
    assert auto["kept_weights"] == timed["kept_weights"] <= 0.1 * dense_weights
    assert auto["mac_ratio"] > 1 and auto["mac_ratio"] * auto["macs"] == pytest.approx(timed["mac_ratio"] * timed["macs"])
    assert all(r["latency_ms"] > 0 for r in rows)   # real timings; the ratios below tie them together
    for r in rows:
        assert r["speedup"] == pytest.approx(by_model["dense"]["latency_ms"] / r["latency_ms"], rel=1e-12)
        assert r["speedup_over_mac_ratio"] == pytest.approx(r["speedup"] / r["mac_ratio"], rel=1e-12)
