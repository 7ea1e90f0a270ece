"""prune under MACs and latency budgets, at column and channel granularity, and its named errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import extract, prune  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from rcprune.torch.pipeline import budgeted_instance, next_budget  # noqa: E402
from tests.torch.cases import flop_timed_latency_table  # noqa: E402


@pytest.fixture(scope="module")
def model_and_table():
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=0).eval()
    x = torch.randn(4, 1, 12, 12)
    table = flop_timed_latency_table(model, x, rows=4, cols=4)
    return model, x, table


def test_macs_speedup_bounds_the_prunable_macs(model_and_table):
    model, x, _ = model_and_table
    # without a channel floor the L1 objective gives the stem away ...
    _, cut = prune(model, x[:1], budget="macs", speedup=2.0, min_channels=0)
    # ... so it was protected first, with every group that solution left without a channel, and solved again
    assert cut.result.info["protected_to_connect"][0] == "conv1:out"
    _, floored = prune(model, x[:1], budget="macs", speedup=2.0)       # the default floor keeps every group
    assert floored.result.info["min_channels"] == 0.25 and floored.result.info["protected_to_connect"] == []
    small, report = prune(model, x[:1], budget="macs", speedup=2.0, protect=["conv1"])
    assert report.measure == "macs" and report.spend <= report.budget
    assert report.macs_after <= report.macs_before / 2 and report.macs_after == report.spend
    with torch.no_grad():
        assert small(x).shape == (4, 4)


@pytest.mark.parametrize("granularity", ["column", "channel"])
def test_latency_speedup_bounds_the_predicted_latency(model_and_table, granularity):
    model, x, table = model_and_table
    small, report = prune(model, x, budget="latency", speedup=1.5, latency_table=table, granularity=granularity,
                          method="network-annealing", solver_options={"moves": 2000})
    assert report.result.feasible and report.measure == "latency"
    assert report.predicted_ms <= table.dense_ms / 1.5 * (1 + 1e-9)
    assert report.predicted_ms == pytest.approx(table.measure(report.extraction, granularity).fixed + report.spend)
    if granularity == "channel":
        for li in report.extraction.instance.layers:
            blocks = report.solution[li.name].cols.reshape(li.in_channels, li.block)
            assert np.all(blocks.all(axis=1) | ~blocks.any(axis=1))
            assert all(l["mode"] in ("conv", "empty", "linear") for l in report.compacted.layers)


def test_latency_ms_and_sparsity_targets(model_and_table):
    model, x, table = model_and_table
    ext = extract(model, x[:1])
    fixed = table.measure(ext).fixed
    inst = budgeted_instance(ext, "latency", latency_ms=0.8 * table.dense_ms, table=table)
    assert inst.budget == pytest.approx(0.8 * table.dense_ms - fixed)
    inst = budgeted_instance(ext, "latency", sparsity=0.25, table=table)
    assert inst.budget == pytest.approx(0.75 * inst.full_spend.sum())


@pytest.mark.parametrize("kwargs, match", [
    ({"speedup": 2.0}, "speedup needs budget='macs' or budget='latency'"),
    ({"budget": "flops"}, "budget must be one of"),
    ({"budget": "latency"}, "needs a target"),
    ({"budget": "macs", "latency_ms": 3.0}, "latency_ms needs budget='latency'"),
    ({"budget": "macs", "speedup": 2.0, "sparsity": 0.5}, "give one of"),
    ({"budget": "macs", "speedup": 0.5}, "speedup must be at least 1"),
    ({"budget": "macs", "speedup": 1e9}, r"unreachable.*a speedup of at most"),
    ({"budget": "macs", "speedup": float("nan")}, "speedup must be a finite number"),
    ({"granularity": "kernel-offset"}, "not built yet"),
])
def test_bad_budgets_are_named(model_and_table, kwargs, match):
    model, x, _ = model_and_table
    with pytest.raises(InvalidInstanceError, match=match):
        prune(model, x[:1], **kwargs)


def test_unreachable_latency_names_the_best_speedup(model_and_table):
    model, x, table = model_and_table
    with pytest.raises(InvalidInstanceError, match=r"unreachable.*a speedup of at most [0-9.]+x"):
        prune(model, x, budget="latency", latency_ms=1e-9, latency_table=table)


def test_unread_rows_are_dropped_without_changing_the_function(model_and_table):
    from rcprune.network.cleanup import drop_unread_rows
    from rcprune.network.model import NetworkSolution
    from rcprune.torch import apply, restore

    model, x, _ = model_and_table
    ext = extract(model, x[:1])
    rng = np.random.default_rng(0)
    sol = NetworkSolution({li.name: (rng.random(li.rows) < 0.7, rng.random(li.cols) < 0.3)
                           for li in ext.instance.layers})
    sol = NetworkSolution({n: (ext.instance.fixed_rows(n) | s.rows, s.cols)
                           for n, s in sol.items()})
    clean = drop_unread_rows(ext.instance, sol)
    assert clean != sol
    outs = []
    for s in (sol, clean):
        apply(model, s, ext)
        with torch.no_grad():
            outs.append(model(x))
        restore(model)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)


def test_prune_reports_dropped_rows_and_keeps_channel_bounds_apart(model_and_table):
    model, x, _ = model_and_table
    _, report = prune(model, x[:1], budget="macs", sparsity=0.7, granularity="channel", bound=True,
                      protect=["conv1"])
    info = report.result.info
    assert report.result.lower_bound is None and info["lower_bound_in_granularity"] <= report.result.cost + 1e-9
    from rcprune.network.cleanup import read_channels
    read = read_channels(report.extraction.instance, report.solution)
    for li in report.extraction.instance.layers:
        assert not np.any(report.solution[li.name].rows & ~read[li.output])


def test_every_pruned_model_still_reads_its_input(model_and_table):
    """Whatever the target, the output depends on the input: two inputs give two outputs."""
    from rcprune.network.cleanup import input_reaches_outputs

    model, x, table = model_and_table
    for speedup in (1.5, 3.0, 6.0):
        try:
            small, report = prune(model, x, budget="latency", speedup=speedup, latency_table=table)
        except InvalidInstanceError as exc:
            assert "unreachable" in str(exc) or "does not fit the budget" in str(exc)
            continue
        assert input_reaches_outputs(report.extraction.instance, report.solution)[0]
        with torch.no_grad():
            a, b = small(x[:2]), small(x[2:4])
        assert not torch.allclose(a, b)


@pytest.mark.parametrize("granularity", ["column", "channel"])
def test_a_channel_floor_keeps_every_block_alive(model_and_table, granularity):
    model, x, table = model_and_table
    small, report = prune(model, x, budget="latency", speedup=1.5, latency_table=table, granularity=granularity,
                          min_channels=0.25, compact=True)
    ext = report.extraction
    ev = report.result.evaluation
    assert report.result.feasible and report.predicted_ms <= table.dense_ms / 1.5 * (1 + 1e-9)
    for g in ext.instance.groups:
        if g.input or g.protected:
            continue
        alive = np.zeros(g.size, bool)
        for p in g.producers:
            alive |= report.solution[p].rows
        assert alive.sum() >= np.ceil(0.25 * g.size - 1e-9), g.name
    assert all(le.n_rows > 0 and le.n_cols > 0 for le in ev.layers)   # no layer removed whole
    assert report.result.info["protected_to_connect"] == []
    masked, _ = prune(model, x, budget="latency", speedup=1.5, latency_table=table, granularity=granularity,
                      min_channels=0.25, compact=False)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)


def test_an_unpayable_floor_is_named(model_and_table):
    model, x, table = model_and_table
    with pytest.raises(InvalidInstanceError, match="unreachable"):
        prune(model, x, budget="latency", speedup=50.0, latency_table=table, min_channels=0.5)
    with pytest.raises(InvalidInstanceError, match="min_channels"):
        prune(model, x, budget="latency", speedup=1.5, latency_table=table, min_channels=-0.1)


def test_the_default_floor_is_lowered_until_the_target_is_reachable(model_and_table):
    model, x, table = model_and_table
    ext = extract(model, x[:1])
    reach = {}
    for floor in (0.25, 0.125, 0.0625, 0.03125, 0.0):
        inst = budgeted_instance(ext, "latency", speedup=1.01, table=table, min_channels=floor)
        reach[floor] = table.dense_ms / (inst.measure.fixed + inst.min_spend.sum())
    assert all(reach[a] <= reach[b] + 1e-9 for a, b in zip(list(reach), list(reach)[1:]))
    # a speedup between the 0.25 floor's limit and the next one's: the default falls back to 0.125
    target = (reach[0.25] + reach[0.125]) / 2
    assert reach[0.125] > reach[0.25] * 1.01
    _, report = prune(model, x, budget="latency", speedup=target, latency_table=table, compact=False)
    assert report.result.info["min_channels"] == 0.125
    with pytest.raises(InvalidInstanceError, match="channel floor of 0.25"):
        prune(model, x, budget="latency", speedup=target, latency_table=table, min_channels=0.25)
    _, report = prune(model, x[:1], sparsity=0.5)                        # weights: no floor by default
    assert report.result.info["min_channels"] == 0.0


def test_calibration_rescales_the_budget_by_the_measured_misprediction(model_and_table):
    model, x, table = model_and_table
    _, plain = prune(model, x, budget="latency", speedup=1.5, latency_table=table, compact=False)
    assert "calibration" not in plain.result.info
    small, report = prune(model, x, budget="latency", speedup=1.5, latency_table=table, calibrate=3)
    rounds = report.result.info["calibration"]
    fixed = table.measure(report.extraction).fixed
    target = table.dense_ms / 1.5
    assert 1 <= len(rounds) <= 3 and sum(bool(r.get("kept")) for r in rounds) == 1
    assert rounds[0]["budget_ms"] == pytest.approx(target)
    inst = budgeted_instance(report.extraction, "latency", speedup=1.5, table=table,
                             min_channels=report.result.info["min_channels"])
    lo, hi = float(inst.min_spend.sum()), float(inst.full_spend.sum())
    for k in range(1, len(rounds)):   # each new budget is next_budget of the rounds before it
        assert rounds[k - 1]["measured_ms"] > 0
        want = next_budget(rounds[:k], target, fixed, lo, hi)
        assert rounds[k]["budget_ms"] - fixed == pytest.approx(want, rel=1e-9)
    kept = next(r for r in rounds if r.get("kept"))
    assert report.predicted_ms == pytest.approx(kept["predicted_ms"])
    within = [r for r in rounds if r["measured_ms"] <= target * 1.02]
    if within:
        assert kept["predicted_ms"] == max(r["predicted_ms"] for r in within)
    else:
        assert kept["measured_ms"] == min(r["measured_ms"] for r in rounds)
    with torch.no_grad():
        assert small(x).shape == (4, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": "macs", "speedup": 1.5, "calibrate": 2}, "calibrate measures compacted models"),
    ({"budget": "latency", "speedup": 1.5, "calibrate": -1}, "calibrate"),
    ({"budget": "latency", "speedup": 1.5, "calibrate": 11}, "calibrate must be at most 10"),
])
def test_bad_calibration_is_named(model_and_table, kwargs, match):
    model, x, table = model_and_table
    with pytest.raises(InvalidInstanceError, match=match):
        prune(model, x, latency_table=table, **kwargs)


def _round(budget, measured):
    return {"budget_ms": budget, "predicted_ms": budget, "measured_ms": measured}


def test_next_budget_rescales_until_the_target_is_bracketed_then_takes_the_secant():
    # one round, too fast by 20%: the ratio rule (predicted 10 measured 8 -> 10 * 10 / 8 - fixed 2)
    assert next_budget([_round(10.0, 8.0)], 10.0, 2.0, 0.0, 100.0) == pytest.approx(10.5)
    # too fast, then too slow: the secant between them (8 at 10, 12 at 14 -> 10 at 12), not a ratio
    rounds = [_round(10.0, 8.0), _round(14.0, 12.0)]
    assert next_budget(rounds, 10.0, 2.0, 0.0, 100.0) == pytest.approx(12.0 - 2.0)
    # the bracket nearest in budget wins: a third round at 13 measuring 11 narrows it to [10, 13]
    rounds.append(_round(13.0, 11.0))
    assert next_budget(rounds, 10.0, 2.0, 0.0, 100.0) == pytest.approx(10.0 + 2 / 3 * 3 - 2.0)
    # noise broke the order (more budget measured faster): the middle of the two budgets
    assert next_budget([_round(12.0, 11.0), _round(13.0, 9.0)], 10.0, 2.0, 0.0, 100.0) == pytest.approx(12.5 - 2.0)
    # both rounds too slow: the last one's ratio; clipped to [least, full]
    assert next_budget([_round(10.0, 20.0), _round(9.0, 18.0)], 10.0, 2.0, 0.0, 100.0) == pytest.approx(5.0 - 2.0)
    assert next_budget([_round(10.0, 20.0)], 10.0, 2.0, 4.0, 100.0) == 4.0
    assert next_budget([_round(10.0, 1.0)], 10.0, 2.0, 0.0, 50.0) == 50.0
