"""The PyTorch adapter, steps 1-3: extract (group structure), apply / restore / bake, compact (equivalence,
sizes, state_dict, export) and the errors of bad inputs."""
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, bake, compact, extract, is_masked  # noqa: E402
from rcprune.torch.masking import restore  # noqa: E402
from rcprune.torch.models import cifar_resnet, randomize_batchnorm  # noqa: E402


def _model(kind):
    torch.manual_seed(0)
    if kind == "resnet18":
        return randomize_batchnorm(torchvision.models.resnet18(num_classes=10)), torch.randn(2, 3, 64, 64)
    if kind == "resnet34":
        return randomize_batchnorm(torchvision.models.resnet34(num_classes=10)), torch.randn(2, 3, 64, 64)
    if kind == "resnet50":
        return randomize_batchnorm(torchvision.models.resnet50(num_classes=10)), torch.randn(2, 3, 64, 64)
    return randomize_batchnorm(cifar_resnet(depth=20, width=8, in_channels=1, num_classes=10, seed=0)), torch.randn(2, 1, 16, 16)


def test_resnet18_groups_one_per_stage():
    model, x = _model("resnet18")
    inst = extract(model, x[:1], sparsity=0.9).instance
    assert inst.n_layers == 21 and len(inst.groups) == 14
    for stage, group in ((1, "conv1:out"), (2, "layer2.0.conv2:out"), (3, "layer3.0.conv2:out"), (4, "layer4.0.conv2:out")):
        producers = set(inst.group(group).producers)
        expected = {f"layer{stage}.0.conv2", f"layer{stage}.1.conv2"}
        expected |= {"conv1"} if stage == 1 else {f"layer{stage}.0.downsample.0"}
        assert producers == expected
    assert inst.group("fc:out").protected and inst.fixed_rows("fc").all()
    assert inst.layer("fc").block == 1 and inst.layer("conv1").kernel == (7, 7)


def test_resnet34_groups_one_per_stage_and_one_inside_each_block():
    model, x = _model("resnet34")
    inst = extract(model, x[:1], sparsity=0.9).instance
    # stem, 16 basic blocks of two convs, three downsamples, classifier; groups: input, one per stage,
    # one inside each block, classifier
    assert inst.n_layers == 1 + 32 + 3 + 1 and len(inst.groups) == 1 + 4 + 16 + 1
    assert len(inst.group("layer3.0.conv2:out").producers) == 7  # six blocks and the downsample
    assert set(inst.group("conv1:out").producers) == {"conv1"} | {f"layer1.{i}.conv2" for i in range(3)}


def test_resnet50_and_cifar_group_counts():
    model, x = _model("resnet50")
    inst = extract(model, x[:1]).instance
    # input, stem, one per stage, two inside each of the 16 bottlenecks, classifier
    assert inst.n_layers == 54 and len(inst.groups) == 1 + 1 + 4 + 32 + 1
    assert len(inst.group("layer3.0.conv3:out").producers) == 7
    model, x = _model("cifar")
    inst = extract(model, x[:1]).instance
    assert inst.n_layers == 22 and len(inst.groups) == 1 + 3 + 9 + 1
    assert set(inst.group("conv1:out").producers) == {"conv1"} | {f"layer1.{i}.conv2" for i in range(3)}


@pytest.mark.parametrize("kind", ["resnet18", "resnet34", "resnet50", "cifar"])
def test_masked_equals_compacted(kind):
    model, x = _model(kind)
    with torch.no_grad():
        dense = model(x)
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    assert is_masked(model)
    with torch.no_grad():
        masked = model(x)
    assert (masked - dense).abs().max() > 1e-3   # the pruning did something
    for partial in ("auto", "im2col", "conv"):
        small, report = compact(model, res.solution, ext, partial=partial)
        with torch.no_grad():
            out = small(x)
        assert (out - masked).abs().max() <= 1e-5 * masked.abs().max()
        assert report.weights_after == res.kept_count
        assert report.macs_after < report.macs_before and report.params_after < report.params_before
    restore(model)
    assert not is_masked(model)
    with torch.no_grad():
        assert torch.equal(model(x), dense)


@pytest.mark.parametrize("kind", ["resnet18", "resnet34", "resnet50", "cifar"])
def test_masked_equals_compacted_on_random_masks(kind):
    """Random rows and columns in every layer: partial channels everywhere and the signal reaches the
    output (network-greedy at 0.9 leaves resnet50's output constant, so the test above cannot see errors
    upstream of its dead stage there)."""
    model, x = _model(kind)
    ext = extract(model, x[:1])
    inst = ext.instance
    rng = np.random.default_rng(0)
    sol = NetworkSolution({li.name: (inst.fixed_rows(li.name) | (rng.random(li.rows) < 0.8),
                                     rng.random(li.cols) < 0.5) for li in inst.layers})
    apply(model, sol, ext)
    with torch.no_grad():
        masked = model(x)
    assert (masked[0] - masked[1]).abs().max() > 1e-3   # the output depends on the input
    for partial in ("auto", "im2col", "conv"):
        small, report = compact(model, sol, ext, partial=partial)
        assert {r["mode"] for r in report.layers} >= {"conv", "linear", "im2col" if partial == "im2col" else "conv-zeros"}
        with torch.no_grad():
            out = small(x)
        assert (out - masked).abs().max() <= 1e-5 * masked.abs().max()


def test_every_node_kind_has_a_handler():
    from rcprune.torch.compact import HANDLERS, _Builder, node_kind

    model, x = _model("resnet18")
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    builder = _Builder(model, ext, res.solution, "auto", 80.0)
    kinds = []
    for node in ext.graph.nodes:
        kinds.append(node_kind(builder, node))
        HANDLERS[kinds[-1]](builder, node)
    assert set(kinds) == {"placeholder", "output", "conv", "linear", "batchnorm", "add", "flatten", "channelwise"}
    assert set(kinds) < set(HANDLERS)   # "untracked": excluded nodes (test_unsupported_ops_error_or_exclude)


def test_bake_keeps_masked_outputs_and_dead_channels_are_zero():
    model, x = _model("cifar")
    ext = extract(model, x[:1], sparsity=0.93)
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    with torch.no_grad():
        masked = model(x)
    eff = res.solution.effective(ext.instance)
    w = model.get_submodule("layer2.0.conv1").weight
    keep = np.outer(eff["layer2.0.conv1"].rows, eff["layer2.0.conv1"].cols).reshape(w.shape)
    assert torch.all(w[torch.from_numpy(~keep)] == 0)
    bake(model)
    assert not is_masked(model) and type(model.get_submodule("layer2.0.conv1")) is torch.nn.Conv2d
    with torch.no_grad():
        assert torch.equal(model(x), masked)


def test_compact_state_dict_roundtrip_and_export():
    model, x = _model("cifar")
    ext = extract(model, x[:1], sparsity=0.9)
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    small, _ = compact(model, res.solution, ext)
    buf = io.BytesIO()
    torch.save(small.state_dict(), buf)
    buf.seek(0)
    other, _ = compact(_model("cifar")[0], res.solution, ext)   # same structure, other weights
    other.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(other(x), small(x))
    exported = torch.export.export(small, (x,))
    with torch.no_grad():
        assert (exported.module()(x) - small(x)).abs().max() <= 1e-5


def test_bad_inputs_give_clear_errors():
    model, x = _model("resnet18")
    with pytest.raises(InvalidInstanceError, match="cannot run on example_inputs"):
        extract(model, torch.randn(1, 1, 64, 64))
    with pytest.raises(InvalidInstanceError, match="sparsity"):
        extract(model, x[:1], sparsity=1.5)
    with pytest.raises(InvalidInstanceError, match="scores"):
        extract(model, x[:1], scores="l3")
    with pytest.raises(InvalidInstanceError, match="protect"):
        extract(model, x[:1], protect=["nope"])
    ext18 = extract(model, x[:1])
    sol18 = NetworkSolution.full(ext18.instance)
    cifar, xc = _model("cifar")
    ext_c = extract(cifar, xc[:1])
    with pytest.raises(InvalidInstanceError, match="solution layers do not match"):
        apply(cifar, sol18, ext_c)
    with pytest.raises(InvalidInstanceError, match="does not match this extraction"):
        apply(cifar, sol18, ext18)
    with pytest.raises(InvalidInstanceError, match="does not match this extraction"):
        compact(cifar, sol18, ext18)
    with pytest.raises(InvalidInstanceError, match="partial must be 'auto', 'im2col' or 'conv', got 'shift'"):
        compact(model, sol18, ext18, partial="shift")


class _Grouped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.g = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)   # C_in != C_out: no channel tie
        self.b = torch.nn.Conv2d(8, 4, 1)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = torch.cos(self.b(self.g(torch.relu(self.a(x)))))
        return self.fc(h.flatten(1))


def test_unsupported_ops_error_or_exclude():
    torch.manual_seed(0)
    model, x = _Grouped().eval(), torch.randn(2, 2, 4, 4)
    with pytest.raises(InvalidInstanceError, match="node 'g'.*grouped conv"):
        extract(model, x[:1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ext = extract(model, x[:1], unsupported="exclude", sparsity=0.5)
    messages = " ".join(str(w.message) for w in caught)
    assert "node 'g'" in messages and "grouped conv" in messages and "node 'cos'" in messages
    assert set(ext.excluded) == {"g", "cos"} and ext.instance.layer_names == ("a", "b", "fc")
    assert ext.instance.group("a:out").protected and ext.instance.group("b:out").protected
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    small, report = compact(model, res.solution, ext)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-5
    assert report.weights_after == res.kept_count


def test_batchnorm_folds_into_the_conv_in_eval_mode_only():
    model, x = _model("cifar")
    ext = extract(model, x[:1], sparsity=0.8)
    res = rcprune.solve(ext.instance, method="network-greedy")
    apply(model, res.solution, ext)
    with torch.no_grad():
        masked = model(x)
    n_bn = lambda m: sum(isinstance(t, torch.nn.modules.batchnorm._BatchNorm) for t in m.modules())  # noqa: E731
    folded, report = compact(model, res.solution, ext, partial="im2col")
    kept, _ = compact(model, res.solution, ext, partial="im2col", fold_batchnorm=False)
    assert n_bn(folded) == 0 < n_bn(kept) and all(l.get("batchnorm") == "folded" for l in report.layers
                                                   if l["layer"] != "fc")
    with torch.no_grad():
        for small in (folded, kept):
            assert (small(x) - masked).abs().max() <= 1e-5 * masked.abs().max()
    model.train()
    trained, _ = compact(model, res.solution, ext)
    assert n_bn(trained) == n_bn(kept) and trained.training
    with pytest.raises(InvalidInstanceError, match="fold_batchnorm"):
        compact(model, res.solution, ext, fold_batchnorm="yes")


@pytest.mark.parametrize("train", [False, True])
def test_layers_without_kept_rows_compact_to_empty_outputs(train):
    """A latency budget may drop every row of the stem and a whole stage: no conv over zero channels,
    no BatchNorm over zero channels, in eval (folded) and train mode."""
    model, x = _model("cifar")
    ext = extract(model, x[:1], sparsity=0.5)
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
    for n in ext.instance.layer_names[:5]:
        layers[n][0][:] = False
    dead = NetworkSolution(layers)
    apply(model, dead, ext)
    with torch.no_grad():
        masked = model(x)
    model.train(train)
    small, report = compact(model, dead, ext, partial="conv")
    assert [l["rows"] for l in report.layers[:5]] == [0] * 5 and report.layers[0]["mode"] == "empty"
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), masked, atol=1e-6)


def test_a_residual_branch_without_kept_rows_is_dropped_from_its_add():
    model, x = _model("cifar")
    ext = extract(model, x[:1], sparsity=0.5)
    full = NetworkSolution.full(ext.instance)
    dead = NetworkSolution({n: (np.zeros_like(s.rows) if n == "layer1.0.conv2" else s.rows, s.cols)
                            for n, s in full.items()})
    apply(model, dead, ext)
    with torch.no_grad():
        masked = model(x)
    small, _ = compact(model, dead, ext)
    from rcprune.torch.compact_forms import ChannelScatterAdd
    assert not any(isinstance(m, ChannelScatterAdd) for m in small.modules())
    with torch.no_grad():
        assert (small(x) - masked).abs().max() <= 1e-5 * masked.abs().max()


def test_a_stem_without_kept_rows_runs_through_pooling():
    """torchvision's stem (conv, BatchNorm, ReLU, max-pool) with no kept row: pooling needs a channel."""
    model, x = _model("resnet18")
    ext = extract(model, x[:1], sparsity=0.5)
    full = NetworkSolution.full(ext.instance)
    dead = NetworkSolution({n: (np.zeros_like(s.rows) if n in ("conv1", "layer1.0.conv1") else s.rows, s.cols)
                            for n, s in full.items()})
    apply(model, dead, ext)
    with torch.no_grad():
        masked = model(x)
    for train in (False, True):
        model.train(train)
        small, report = compact(model, dead, ext)
        assert report.layers[0]["rows"] == 0 and report.layers[0]["mode"] == "empty"
        with torch.no_grad():
            assert (small.eval()(x) - masked).abs().max() <= 1e-5 * masked.abs().max()
    model.eval()


def test_layer_weight_selects_the_kept_part_of_every_mask_form():
    """``layer_weight(module, rows, cols)`` == the effective weight's rows and columns, whether the module is
    masked by apply (selected before masking), also with a second parametrization on top, by
    torch.nn.utils.prune, or plain."""
    from torch.nn.utils import parametrize, prune as tprune

    from rcprune.torch.compact import layer_weight
    from rcprune.torch.rcmask import register

    rows, cols = np.array([0, 2, 3]), np.array([1, 4])
    for form in ("rcmask", "rcmask+scale", "torch-prune", "plain"):
        torch.manual_seed(0)
        lin = torch.nn.Linear(5, 4)
        keep = torch.rand(4, 5) > 0.4
        if form.startswith("rcmask"):
            register(lin, "weight", keep)
        if form == "rcmask+scale":
            class Double(torch.nn.Module):
                def forward(self, w):
                    return 2 * w
            parametrize.register_parametrization(lin, "weight", Double())
        if form == "torch-prune":
            tprune.custom_from_mask(lin, "weight", keep)
        want = lin.weight.detach()[rows][:, cols]
        assert torch.equal(layer_weight(lin, rows, cols), want), form
        assert torch.equal(layer_weight(lin, rows), lin.weight.detach()[rows]), form
