"""prune at group granularity: Torch-Pruning's space under every budget, compacted to plain convs."""
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.floor import channel_floor  # noqa: E402
from rcprune.torch import compact, prune  # noqa: E402
from rcprune.torch.compact_forms import ChannelScatter, ChannelScatterAdd, RCConv2d, RCLinear  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from tests.network.test_group import group_sets  # noqa: E402
from tests.torch.cases import flop_timed_latency_table  # noqa: E402


@pytest.fixture(scope="module")
def model_and_table():
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=0).eval()
    x = torch.randn(4, 1, 12, 12)
    return model, x, flop_timed_latency_table(model, x, rows=4, cols=4)


def _check_group_space(report) -> dict:
    """The report's solution lies in the group space of its floored instance and is feasible there."""
    net = channel_floor(report.extraction.instance, report.result.info["min_channels"])
    sets = group_sets(net, report.solution)
    assert report.result.feasible and report.result.method == "network-group"
    for g in report.result.info["protected_to_connect"]:
        assert sets[g].any()
    return sets


def test_a_group_pruned_resnet_compacts_to_plain_convs_without_gathers(model_and_table):
    model, x, _ = model_and_table
    masked, report = prune(model, x[:1], granularity="group", budget="macs", speedup=2.0, compact=False)
    sets = _check_group_space(report)
    assert report.spend <= report.budget and any(not s.all() for s in sets.values())
    small, crep = compact(masked, report.solution, report.extraction)
    convs = [m for m in small.modules() if isinstance(m, RCConv2d)]
    assert convs and all(m.mode == "conv" and m.in_index is None for m in convs)
    assert all(m.in_index is None for m in small.modules() if isinstance(m, RCLinear))
    assert not any(isinstance(m, (ChannelScatterAdd, ChannelScatter)) for m in small.modules())
    assert sum(m.weight.shape[1] for m in convs) < sum(m.in_channels for m in model.modules()
                                                       if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        want = masked(x)
        assert (small(x) - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize("kwargs", [
    {"budget": "weights", "sparsity": 0.8},
    {"budget": "macs", "speedup": 3.0, "min_channels": 0.5},
    {"budget": "latency", "speedup": 1.5},
    {"budget": "latency", "speedup": 1.5, "min_channels": 0},
    {"budget": "latency", "speedup": 1.3, "calibrate": 1},
])
def test_every_budget_prunes_in_the_group_space(model_and_table, kwargs):
    model, x, table = model_and_table
    extra = {"latency_table": table} if kwargs["budget"] == "latency" else {}
    small, report = prune(model, x, granularity="group", **kwargs, **extra)
    _check_group_space(report)
    if kwargs["budget"] == "latency":
        assert report.predicted_ms <= table.dense_ms / kwargs["speedup"] * (1 + 1e-9) or "calibrate" in kwargs
    else:
        assert report.spend <= report.budget
    with torch.no_grad():
        assert small(x).shape == (4, 4)


def test_a_cut_group_keeps_its_best_channel(model_and_table):
    """Without a floor, a MACs speedup of 5 gives the stem's group away; it is kept alive with one channel
    (protecting it would keep all of them, read whole by every consumer), as is every group that solution
    left without a channel, and solved again."""
    model, x, _ = model_and_table
    _, report = prune(model, x[:1], granularity="group", budget="macs", speedup=5.0, min_channels=0)
    sets = _check_group_space(report)
    kept_alive = report.result.info["protected_to_connect"]
    assert kept_alive[0] == "conv1:out" and 1 <= sets["conv1:out"].sum() < 8
    assert all(sets[g].sum() >= 1 for g in kept_alive)


def test_group_latency_tables_price_whole_channels(model_and_table):
    _, _, table = model_and_table
    for layer in table.layers:
        assert table.spend_table(layer, "group") == table.spend_table(layer, "channel")


def test_only_network_group_searches_the_group_space(model_and_table):
    model, x, _ = model_and_table
    with pytest.raises(InvalidInstanceError, match="searched by network-group, network-uniform only"):
        prune(model, x[:1], granularity="group", method="network-greedy")
    with pytest.raises(InvalidInstanceError, match="one of column, channel, group"):
        prune(model, x[:1], granularity="groups")
    _, report = prune(model, x[:1], granularity="column", method="network-group", sparsity=0.5)
    assert report.result.method == "network-group" and report.result.feasible
