"""Channel concatenations (issue #19): the segments the tracer records, the consumers' columns at each
segment's offset, BatchNorm on a concatenation masked per segment, nested concatenations, compacted ==
masked in float64 on random solutions (dead producers included), and the refusals by node
(``rcprune.torch.extract_concat``, ``compact_concat``)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, compact, extract  # noqa: E402
from tests.torch.cases import compact_matching, random_solution as _random_solution  # noqa: E402
from rcprune.torch.saved_model import load_compacted, save_compacted  # noqa: E402
from rcprune.torch.models import randomize_batchnorm  # noqa: E402

nn = torch.nn
F = torch.nn.functional


class Concats(nn.Module):
    """A fire module (cat -> relu -> pool -> conv), a dense step (cat of a cat, BatchNorm on it) and a
    cat -> pool -> flatten -> linear head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 5, 3, padding=1)
        self.c = nn.Conv2d(8, 6, 3, padding=1)
        self.bn2, self.d = nn.BatchNorm2d(14), nn.Conv2d(14, 4, 1)
        self.bn3, self.fc = nn.BatchNorm2d(18), nn.Linear(18 * 4, 3)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        fire = F.max_pool2d(torch.relu(torch.cat([self.a(x), self.b(x)], 1)), 2)   # a, b
        dense = torch.cat([fire, self.c(fire)], dim=1)                              # a, b, c
        dense = torch.cat((dense, self.d(F.relu(self.bn2(dense)))), 1)             # a, b, c, d
        out = F.adaptive_avg_pool2d(F.relu(self.bn3(dense)), 2)
        return self.fc(torch.flatten(out, 1))


def _model(seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(Concats(), seed).double()


def test_the_tracer_reads_each_segment_at_its_offset():
    ext = extract(_model(), torch.zeros(1, 3, 8, 8, dtype=torch.float64), sparsity=0.5)
    inst = ext.instance
    assert inst.layer_names == ("stem", "a", "b", "c", "d", "fc")
    assert inst.layer("c").inputs == (("a:out", 0), ("b:out", 3))
    assert inst.layer("d").inputs == (("a:out", 0), ("b:out", 3), ("c:out", 8))
    assert inst.layer("fc").inputs == (("a:out", 0), ("b:out", 3), ("c:out", 8), ("d:out", 14))
    assert inst.layer("fc").block == 4 and inst.layer("fc").cols == 72
    assert [s.group for s in ext.nodes["cat_2"].parts] == ["a:out", "b:out", "c:out", "d:out"]
    assert list(ext.ops.values()) == ["cat"] * 3
    # the consumers of a's group: every layer that reads a concatenation holding it
    assert {c for c, _ in inst.group("a:out").consumers} == {"c", "d", "fc"}


def test_a_removed_channel_frees_the_columns_at_its_segment_offset_and_masks_the_batchnorm():
    model, x = _model(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    inst = ext.instance
    full = {li.name: (np.ones(li.rows, bool), np.ones(li.cols, bool)) for li in inst.layers}
    full["b"][0][[1, 4]] = False                       # b's channels 1 and 4: concatenated channels 4 and 7
    sol = NetworkSolution(full)
    eff = sol.effective(inst)
    dead_c = np.zeros(8 * 9, bool)
    dead_c[[4 * 9 + k for k in range(9)] + [7 * 9 + k for k in range(9)]] = True
    assert (~eff["c"].cols == dead_c).all()
    assert np.flatnonzero(~eff["d"].cols).tolist() == [4, 7]
    assert np.flatnonzero(~eff["fc"].cols).tolist() == list(range(16, 20)) + list(range(28, 32))
    apply(model, sol, ext)
    assert np.flatnonzero(model.bn2.weight.detach().numpy() == 0).tolist() == [4, 7]
    seen = {}
    model.bn3.register_forward_hook(lambda m, i, o: seen.__setitem__("bn3", o))
    with torch.no_grad():
        model(x)
    per_channel = seen["bn3"].abs().amax(dim=(0, 2, 3))
    assert (per_channel[[4, 7]] == 0).all() and (np.delete(per_channel.numpy(), [4, 7]) > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_compacted_equals_masked_on_random_solutions(seed):
    model = _model(seed)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ext = extract(model, x[:1], sparsity=0.5)
    sol = _random_solution(ext.instance, seed)
    if seed in (0, 1):   # a whole producer of a segment dies (b; then c too)
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        layers["b"][0][:] = False
        if seed == 1:
            layers["c"][0][:] = False
        sol = NetworkSolution(layers)
    small = compact_matching(model, sol, ext, x)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert [n.target for n in small.graph.nodes if n.op == "call_function"].count(torch.cat) == 3


def test_the_solvers_the_bound_and_saving_work_on_a_concatenation_instance(tmp_path):
    model, x = _model(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    res = rcprune.solve(ext.instance, method="network-greedy", bound=True)
    assert res.feasible and res.lower_bound is not None and 0 <= res.lower_bound <= res.cost + 1e-9
    masked = apply(copy.deepcopy(model), res.solution, ext)
    small, _ = compact(masked, res.solution, ext)
    loaded = load_compacted(save_compacted(small, tmp_path / "small.pt"))
    with torch.no_grad():
        want = masked(x)
        assert (small(x) - want).abs().max() <= 1e-9 * want.abs().max()
        assert torch.equal(loaded(x), small(x))


class _Cat(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.b, self.c, self.w = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1), nn.Conv2d(4, 2, 1), nn.Conv2d(2, 2, 1)
        self.k = nn.Parameter(torch.ones(1, 2, 4, 4))

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        if self.how == "width":
            return self.w(torch.cat([a, b], 3))
        if self.how == "twice":
            return self.c(torch.cat([a, a], 1))
        if self.how == "constant":
            return self.c(torch.cat([a, self.k.expand(x.shape[0], -1, -1, -1)], 1))
        return self.c(torch.cat([a, b], 1) + 1.0)   # "add": an op that cannot follow segments


@pytest.mark.parametrize("how, message", [
    ("twice", r"node 'cat' \(call_function cat\): concatenates channel group\(s\) \['a:out'\] more than once"),
    ("constant", r"node 'cat' \(call_function cat\): concatenates a tensor outside the pruned channels"),
    ("add", r"node 'add' \(call_function add\): this op is not supported on a concatenation"),
])
def test_what_the_tracer_cannot_follow_is_refused_by_node_and_can_be_excluded(how, message):
    model, x = _Cat(how).double().eval(), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(InvalidInstanceError, match=message):
        extract(model, x[:1])
    with pytest.warns(UserWarning, match="kept whole"):
        ext = extract(model, x[:1], sparsity=0.5, unsupported="exclude")
    sol = _random_solution(ext.instance, 0, p_row=0.5)
    apply(model, sol, ext)
    small, _ = compact(model, sol, ext)
    with torch.no_grad():
        want = model(x)
        assert (small(x) - want).abs().max() <= 1e-9 * want.abs().max()


def test_a_concatenation_along_positions_merges_the_groups_and_compacts():
    model, x = _Cat("width").double().eval(), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    assert ext.instance.group("a:out").producers == ("a", "b") and ext.ops["cat"] == "full"
    for seed in range(3):
        compact_matching(_Cat("width").double().eval(), _random_solution(ext.instance, seed, p_row=0.5), ext, x)


class _Outputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1), self.c(x)


def test_a_concatenation_at_the_output_is_protected_and_compacts():
    model, x = _Outputs().double().eval(), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    assert all(ext.instance.fixed_rows(n).all() for n in ("a", "b"))
    sol = _random_solution(ext.instance, 0, p_row=0.3)
    apply(model, sol, ext)
    small, _ = compact(model, sol, ext)
    with torch.no_grad():
        for want, got in zip(model(x), small(x)):
            assert want.shape == got.shape and (got - want).abs().max() <= 1e-12 * want.abs().max()


def test_a_collapsed_channel_of_a_concatenation_regenerates_its_segments_producer_row():
    from rcprune.torch.regenerate import regenerate_channels

    model = _model()
    extract(model, torch.zeros(1, 3, 8, 8, dtype=torch.float64), sparsity=0.5)
    before = {n: getattr(model, n).weight.detach().clone() for n in ("a", "b", "c")}
    with torch.no_grad():
        model.bn2.weight[5] = 0.0                  # concatenated channel 5: b's channel 2
    assert regenerate_channels(model, seed=1) == {"bn2": 1}
    assert model.bn2.weight[5] > 0
    changed = {n: [int(r) for r in torch.nonzero((getattr(model, n).weight != w).flatten(1).any(1)).flatten()]
               for n, w in before.items()}
    assert changed == {"a": [], "b": [2], "c": []}
