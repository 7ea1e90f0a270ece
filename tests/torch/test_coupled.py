"""Grouped and depthwise convs (channel-tied) and squeeze-excitation gates: the coupling the tracer records,
the masks, and compacted == masked on random row / column choices, dead channels and whole dead groups
included (``rcprune.torch.extract_tied``, ``extract_gate``, ``compact_tied``)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, compact, extract  # noqa: E402
from tests.torch.cases import compact_matching  # noqa: E402
from rcprune.torch.compact_tied import grouped_weights  # noqa: E402
from tests.torch.export_cases import Coupled, randomize_batchnorm  # noqa: E402


def _random_solution(inst, seed, p_row=0.6, p_col=0.7):
    rng = np.random.default_rng(seed)
    return NetworkSolution({li.name: (inst.fixed_rows(li.name) | (rng.random(li.rows) < p_row),
                                      rng.random(li.cols) < p_col) for li in inst.layers})


def test_the_tracer_ties_grouped_and_depthwise_convs_and_merges_the_gate():
    ext = extract(Coupled(), torch.zeros(1, 3, 8, 8), sparsity=0.5)
    inst = ext.instance
    assert inst.layer_names == ("a", "b", "se.fc1", "se.fc2", "c", "fc")   # tied convs are not layers
    assert set(ext.tied) == {"dw", "g"} and ext.tied["dw"].groups == 8 and ext.tied["g"].groups == 2
    # the depthwise and grouped convs pass a's group through; the gate's fc2 produces b's group
    assert ext.nodes["dw"].group == ext.nodes["g"].group == "a:out"
    assert inst.group("b:out").producers == ("b", "se.fc2")
    assert ext.ops["se_scale_activation"] == "gate" and ext.nodes["se_scale_activation"].support is None
    assert [k for k in ext.ops.values()].count("scale") == 1
    other = Coupled()
    other.dw = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8)   # same layers, another depthwise kernel
    with pytest.raises(InvalidInstanceError, match="module 'dw' should have weight shape"):
        apply(other, NetworkSolution.full(inst), ext)


def test_a_removed_channel_is_zero_after_the_tied_convs():
    model = randomize_batchnorm(Coupled())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model = model.double()
    ext = extract(model, x[:1], sparsity=0.5)
    rows = {li.name: np.ones(li.rows, bool) for li in ext.instance.layers}
    rows["a"][[1, 2, 5]] = False                     # channel 1, 2 and 5 of a's group die
    sol = NetworkSolution({n: (r, np.ones(ext.instance.layer(n).cols, bool)) for n, r in rows.items()})
    apply(model, sol, ext)
    seen = {}
    for name in ("dw", "g", "g_bn"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    with torch.no_grad():
        model(x)
    for name in ("dw", "g", "g_bn"):
        per_channel = seen[name].abs().amax(dim=(0, 2, 3))
        assert (per_channel[[1, 2, 5]] == 0).all() and (per_channel[[0, 3, 4, 6, 7]] > 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_compacted_equals_masked_on_random_solutions(seed):
    model = randomize_batchnorm(Coupled(), seed).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ext = extract(model, x[:1], sparsity=0.5)
    sol = _random_solution(ext.instance, seed)
    if seed == 0:   # a whole group of the grouped conv dies
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        layers["a"][0][:4], layers["a"][0][4:6] = False, True
        sol = NetworkSolution(layers)
    if seed == 1:   # every channel of the tied convs dies
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        layers["a"][0][:] = False
        sol = NetworkSolution(layers)
    small = compact_matching(model, sol, ext, x)
    padded = [m.out_index is not None for m in small.modules() if type(m).__name__ == "GroupedConv"]
    # the depthwise conv is never padded; the grouped one is where its two groups keep different counts
    assert padded == {0: [False, False], 1: [], 4: [False, False]}.get(seed, [False, True])
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_grouped_weights_pad_unequal_groups_and_keep_equal_ones_plain():
    w = torch.arange(4 * 2 * 1 * 1, dtype=torch.float64).reshape(4, 2, 1, 1)   # 2 groups of 2 channels
    cw, b, in_index, out_index, groups = grouped_weights(w, None, np.array([0, 1, 3]), 2)
    assert groups == 2 and cw.shape == (4, 2, 1, 1)
    assert in_index.tolist() == [0, 1, 2, 2] and out_index.tolist() == [0, 1, 2]
    assert cw[:, :, 0, 0].tolist() == [[0, 1], [2, 3], [7, 0], [0, 0]]   # channel 3 reads itself: w[3, 1]
    cw, b, in_index, out_index, groups = grouped_weights(w, torch.ones(4, dtype=torch.float64), np.array([1, 3]), 2)
    assert groups == 2 and in_index is None and out_index is None and cw[:, 0, 0, 0].tolist() == [3, 7]
    assert b.tolist() == [1, 1]


def test_a_grouped_conv_without_a_channel_tie_is_refused_by_node():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 8, 3, groups=4), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 16, 2))
    with pytest.raises(InvalidInstanceError, match=r"node '_1' \(call_module 1\): grouped conv \(groups=4\) "
                                                   r"with 4 input and 8 output channels"):
        extract(model, torch.zeros(1, 3, 6, 6))


class _Products(torch.nn.Module):
    def __init__(self, gate_channels):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, gate_channels, 1)
        self.c = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.c(0.5 * (self.a(x) * torch.sigmoid(self.b(x))))


def test_a_product_of_different_channel_counts_is_refused_by_node_and_a_number_keeps_the_group():
    with pytest.raises(InvalidInstanceError, match=r"node 'mul'.*same channels"):
        extract(_Products(1), torch.zeros(1, 3, 4, 4))
    model, x = _Products(4).eval(), torch.randn(2, 3, 4, 4)
    ext = extract(model, x[:1], sparsity=0.5)
    assert ext.nodes["mul_1"].group == "a:out" and ext.instance.group("a:out").producers == ("a", "b")
    sol = _random_solution(ext.instance, 0, p_row=0.5)
    apply(model, sol, ext)
    small, _ = compact(model, sol, ext)
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-5 * model(x).abs().max()


def test_network_solvers_and_the_bound_work_on_the_coupled_instance():
    model = randomize_batchnorm(Coupled())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ext = extract(model, x[:1], sparsity=0.5)
    res = rcprune.solve(ext.instance, method="network-greedy", bound=True)
    assert res.feasible and res.lower_bound is not None and 0 <= res.lower_bound <= res.cost + 1e-9
    assert np.isfinite(res.gap)
    # the exact solver and the group-space one (allocation and annealing: same protocol, slower to compile)
    for method in ("network-cpsat", "network-group"):
        sol = rcprune.solve(ext.instance, method=method, seed=0, time_limit=5).solution
        assert ext.instance.evaluate(sol).feasible
        masked = apply(copy.deepcopy(model), sol, ext)
        small, _ = compact(masked, sol, ext)
        with torch.no_grad():
            assert (small(x) - masked(x)).abs().max() <= 1e-5 * masked(x).abs().max()
