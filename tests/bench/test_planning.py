"""The planning benchmark: rows per method and speedup, every plan within its latency target (no timing
assertions). The latency tables here are "timed" by counting FLOPs: a table timed on a loaded machine can
price the floor above the dense model and make a target unreachable, which says nothing about planning."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from rcprune.bench.planning import PLANNING_COLUMNS, bench_planning  # noqa: E402
from rcprune.torch import latency_grid  # noqa: E402


@pytest.fixture
def flop_timing(monkeypatch):
    """Deterministic "milliseconds": a microsecond per million FLOPs of each call."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(calls, *, repeats, warmup, device):
        out = {}
        with torch.inference_mode():
            for key, (module, args) in calls.items():
                with FlopCounterMode(display=False) as counter:
                    module(*args)
                out[key] = 1e-6 * counter.get_total_flops()
        return out

    monkeypatch.setattr(latency_grid, "time_calls", flops)


def test_planning_rows_meet_their_targets(tmp_path, flop_timing):
    fast = {"rows": 3, "cols": 3, "repeats": 1, "warmup": 1}
    rows, facts = bench_planning("resnet18", size=16, batch=1, speedups=(1.5, 2.0),
                                 methods=("network-greedy", "network-annealing"),
                                 options={"network-annealing": {"moves": 2000}}, table_options=fast,
                                 cache_dir=tmp_path)
    assert [(r["method"], r["speedup"]) for r in rows] == [
        ("network-greedy", 1.5), ("network-greedy", 2.0), ("network-annealing", 1.5), ("network-annealing", 2.0)]
    assert all(set(PLANNING_COLUMNS) <= set(r) and r["feasible"] for r in rows)
    assert all(r["predicted_ms"] <= r["target_ms"] * (1 + 1e-9) for r in rows)
    assert facts["layers"] == 21 and facts["dense_ms"] > 0
    again, facts2 = bench_planning("resnet18", size=16, batch=1, speedups=(1.5,), methods=("network-greedy",),
                                   table_options=fast, cache_dir=tmp_path)
    assert facts2["dense_ms"] == facts["dense_ms"]   # the table came from the cache


def test_cli_plan_and_table_quick(capsys, tmp_path, monkeypatch, flop_timing):
    from rcprune.cli import main

    monkeypatch.setenv("RCPRUNE_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "plan", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "planning a latency budget: resnet18" in out and "network-greedy" in out


def test_cli_table_passes_its_options(capsys, monkeypatch):
    import rcprune.bench.latency_table as lt
    from rcprune.cli import main

    seen = {}

    def fake(out, **kwargs):
        seen.update(kwargs, out=out)
        return {"rows": [{"model": "m", "density": 0.5, "ratio": 1.0}], "tables": []}

    monkeypatch.setattr(lt, "run_table_check", fake)
    assert main(["bench", "table", "--quick", "--out", "dir"]) == 0
    assert seen["densities"] == (0.5, 0.85) and seen["models"] == ("resnet20-28x28-b64",) and seen["out"] == "dir"
    assert "predicted vs measured" in capsys.readouterr().out
