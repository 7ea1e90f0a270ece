"""Channel splits and channel shuffles (issue #19, ShuffleNet): opaque reorderings whose inputs are
protected and whose outputs are new always-alive groups; the branches around them prune; compacted ==
masked in float64 on random solutions; the refusals by node (``rcprune.torch.extract_shuffle``)."""
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import extract  # noqa: E402
from rcprune.torch.models import randomize_batchnorm  # noqa: E402
from tests.torch.cases import compact_matching, random_solution as _random_solution  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def _shuffle(x, groups):
    n, c, h, w = x.size()
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)


class Unit(nn.Module):
    """A stem, one stride-1 ShuffleNet unit (split, a branch of 1x1 conv, depthwise conv and 1x1 conv, concat,
    shuffle), a 1x1 conv and a pooled head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b1, self.bn1 = nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6)
        self.dw, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6)
        self.b3, self.bn3 = nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4)
        self.last, self.fc = nn.Conv2d(8, 5, 1), nn.Linear(5, 3)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x1, x2 = x.chunk(2, dim=1)
        y = F.relu(self.bn3(self.b3(self.bn2(self.dw(F.relu(self.bn1(self.b1(x2))))))))
        x = _shuffle(torch.cat((x1, y), dim=1), 2)
        return self.fc(F.relu(self.last(x)).mean([2, 3]))


def _model(seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(Unit(), seed).double().eval()


def test_splits_and_shuffles_protect_what_they_read_and_give_new_groups():
    ext = extract(_model(), torch.zeros(1, 3, 6, 6, dtype=torch.float64), sparsity=0.5)
    inst = ext.instance
    assert inst.layer_names == ("stem", "b1", "b3", "last", "fc")
    assert inst.group("stem:out").protected and inst.group("b3:out").protected      # read by the split, the shuffle
    assert not inst.group("b1:out").protected and "dw" in ext.tied                   # the branch's hidden channels
    assert inst.layer("b1").inputs == (("getitem_1:piece", 0),) and inst.group("getitem_1:piece").size == 4
    assert inst.layer("last").inputs == (("view:shuffled", 0),)
    assert ext.ops["chunk"] == "opaque" and ext.ops["view_1"] == "opaque" and ext.ops["mean"] == "channelwise"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compacted_equals_masked_on_random_solutions(seed):
    model = _model(seed)
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ext = extract(model, x[:1], sparsity=0.5)
    sol = _random_solution(ext.instance, seed)
    if seed == 1:   # the branch's hidden channels all removed
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        layers["b1"][0][:] = False
        sol = NetworkSolution(layers)
    small = compact_matching(model, sol, ext, x)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


class _Bad(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if self.how == "width":
            return self.b(torch.cat(y.chunk(2, dim=3), 1)[:, :4])
        if self.how == "inside":
            return self.b(F.relu(y.view(1, 2, 2, 2, 2)).view(1, 4, 2, 2))
        first, rest = y.split([1, 3], dim=1)                    # "ok": sizes given as a list, the pieces swapped
        return self.b(torch.cat([rest, first], 1))


@pytest.mark.parametrize("how, message", [
    ("width", r"node 'chunk' \(call_method chunk\): a split along another dim"),
    ("inside", r"node 'relu' \(call_function relu\): an op inside a channel shuffle"),
])
def test_what_the_tracer_cannot_follow_is_refused_by_node(how, message):
    with pytest.raises(InvalidInstanceError, match=message):
        extract(_Bad(how).double().eval(), torch.zeros(1, 3, 2, 2, dtype=torch.float64))


def test_a_split_by_sizes_gives_one_group_per_piece():
    model, x = _Bad("ok").double().eval(), torch.randn(2, 3, 2, 2, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    assert [ext.instance.group(g).size for g, _ in ext.instance.layer("b").inputs] == [3, 1]
    compact_matching(model, _random_solution(ext.instance, 0), ext, x)
