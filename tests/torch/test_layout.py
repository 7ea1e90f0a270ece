"""Channels-last blocks and token tensors (issue #19): permutes, reshapes that merge positions, indexing,
Linear layers on the last dim, LayerNorm (its group protected), parameters that scale or shift channels,
concatenation along positions and multi-head attention as an opaque op; compacted == masked in float64 on
random solutions, and the refusals by node (``rcprune.torch.extract_layout``, ``extract_norm``,
``extract_attention``, ``extract_constant``, ``compact_layout``)."""
import pytest

torch = pytest.importorskip("torch")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import extract  # noqa: E402
from rcprune.torch.extract_layout import merged_span  # noqa: E402
from rcprune.torch.saved_model import load_compacted, save_compacted  # noqa: E402
from tests.torch.cases import compact_matching, random_solution as _random_solution  # noqa: E402

nn = torch.nn
F = torch.nn.functional


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm block (attention + MLP), a head on
    the class token: the layout of torchvision's ``vit_b_16``."""

    def __init__(self, dim=8, hidden=12):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 2, 2)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 5, dim))
        self.ln1, self.ln2, self.ln = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        n = x.shape[0]
        t = self.patch(x).reshape(n, 8, 4).permute(0, 2, 1)
        t = torch.cat([self.cls.expand(n, -1, -1), t], dim=1) + self.pos
        h = self.ln1(t)
        a, _ = self.attn(h, h, h, need_weights=False)
        t = a + t
        t = t + self.fc2(F.gelu(self.fc1(self.ln2(t))))
        return self.head(self.ln(t)[:, 0])


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """A stem with a channels-first LayerNorm, one ConvNeXt block (depthwise conv, permute, LayerNorm,
    MLP on the last dim, permute back, layer scale, residual) and a pooled head."""

    def __init__(self, dim=6):
        super().__init__()
        self.stem, self.norm = nn.Conv2d(3, dim, 2, 2), LayerNorm2d(dim)
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.ln = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim, 1, 1), 0.7))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.norm(self.stem(x))
        y = torch.permute(self.dw(x), [0, 2, 3, 1])
        y = self.fc2(F.gelu(self.fc1(self.ln(y)))).permute(0, 3, 1, 2)
        x = x + self.scale * y
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _vit(seed=0):
    torch.manual_seed(seed)
    return TinyViT().double().eval()


def _convnext(seed=0):
    torch.manual_seed(seed)
    return TinyConvNeXt().double().eval()


def test_the_tracer_follows_tokens_through_a_transformer_block():
    ext = extract(_vit(), torch.zeros(1, 3, 4, 4, dtype=torch.float64), sparsity=0.5)
    inst = ext.instance
    assert inst.layer_names == ("patch", "fc1", "fc2", "head")
    # the residual stream is normalized: one protected group through the block; the MLP's hidden channels prune
    stream = inst.group("patch:out")
    assert stream.protected and set(stream.producers) == {"patch", "fc2"}
    assert not inst.group("fc1:out").protected
    assert inst.layer("fc1").positions == 5 and inst.layer("head").positions == 1
    assert ext.nodes["permute"].axis == 2 and ext.nodes["getitem_3"].axis == 1
    assert ext.ops["reshape"] == "merge" and ext.ops["cat"] == "full" and ext.ops["attn"] == "opaque"
    assert ext.nodes["cat"].support is None      # the class token is not zero on a removed channel


def test_the_tracer_follows_a_convnext_block():
    ext = extract(_convnext(), torch.zeros(1, 3, 8, 8, dtype=torch.float64), sparsity=0.5)
    inst = ext.instance
    assert inst.layer_names == ("stem", "fc1", "fc2", "head")
    assert inst.group("stem:out").protected and not inst.group("fc1:out").protected
    assert inst.layer("fc1").positions == 16 and "dw" in ext.tied
    assert ext.ops["mul"] == "full" and ext.nodes["permute"].axis == 3 and ext.nodes["permute_3"].axis == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("build, size", [(_vit, 4), (_convnext, 8)])
def test_compacted_equals_masked_on_random_solutions(build, size, seed):
    model = build(seed)
    x = torch.randn(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ext = extract(model, x[:1], sparsity=0.5)
    sol = _random_solution(ext.instance, seed)
    if seed == 1:   # every hidden channel removed: fc2 reads nothing, its output is its bias
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        layers["fc1"][0][:] = False
        sol = NetworkSolution(layers)
    small = compact_matching(model, sol, ext, x)
    hidden = small.get_submodule(next(n for n, m in small.named_children() if n.startswith("rc_fc1")))
    assert hidden.weight.shape[0] == int(sol.effective(ext.instance)["fc1"].rows.sum())
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("build, size", [(_vit, 4), (_convnext, 8)])
def test_a_pruned_transformer_saves_and_loads_without_pickle(build, size, tmp_path):
    model = build()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    ext = extract(model, x[:1], sparsity=0.5)
    small = compact_matching(model, _random_solution(ext.instance, 3), ext, x)
    loaded = load_compacted(save_compacted(small, tmp_path / "small.pt"))
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))


def test_merged_span():
    assert merged_span((2, 8, 4, 4), (2, 8, 16), 1) == (2, 3)
    assert merged_span((2, 4, 4, 8), (2, 16, 8), 3) == (1, 2)
    assert merged_span((2, 8, 4, 4), (2, 32, 4), 1) is None      # merges the channels
    assert merged_span((2, 8, 4, 4), (2, 8, 2, 8), 1) is None    # not a merge
    assert merged_span((2, 8, 4, 4), (16, 4, 4), 1) is None      # merges the batch


class _Bad(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.fc = nn.Conv2d(3, 4, 1), nn.Linear(4, 2)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=how != "attention")
        self.ln = nn.LayerNorm([4, 4])

    def forward(self, x):
        y = self.a(x)                                       # (N, 4, 2, 2)
        if self.how == "norm":
            return self.fc(self.ln(y.flatten(2)).mean(2))    # a LayerNorm over positions and channels
        if self.how == "batch":
            return self.fc(y.permute(1, 0, 2, 3).mean((2, 3)).t())
        if self.how == "attention":      # tokens (N, L, E) into an attention that reads (L, N, E)
            t = y.flatten(2).permute(0, 2, 1)
            return self.fc(self.attn(t, t, t)[0].mean(1))
        if self.how == "channels":
            return self.fc(y.permute(0, 2, 3, 1)[:, 0, 0, 0:4])
        return self.fc(F.max_pool2d(y.permute(0, 2, 3, 1), (1, 1)).mean((1, 2)))   # "pool": on the channels' dim


@pytest.mark.parametrize("how, message", [
    ("norm", r"node 'ln' \(call_module ln\): LayerNorm over \(4, 4\)"),
    ("batch", r"node 'permute' \(call_method permute\): permute \[1, 0, 2, 3\]"),
    ("attention", r"node 'attn' \(call_module attn\): MultiheadAttention with batch_first=False"),
    ("channels", r"node 'getitem' \(call_function getitem\): indexing"),
    ("pool", r"node 'max_pool2d' \(call_function max_pool2d\): this op on a tensor whose channels are on dim 3"),
])
def test_what_the_tracer_cannot_follow_is_refused_by_node(how, message):
    model = _Bad(how).double().eval()
    with pytest.raises(InvalidInstanceError, match=message):
        extract(model, torch.zeros(1, 3, 2, 2, dtype=torch.float64))
