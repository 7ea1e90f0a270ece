"""compact on a layer that keeps rows but no column (a residual branch emptied by the solver, its channel
group kept alive by the shortcut): the compacted model computes what the masked one does."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import apply, compact, extract  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402


@pytest.mark.parametrize("layer", ["layer1.0.conv2", "layer2.1.conv1", "layer2.1.conv2"])
def test_compact_layer_with_rows_and_no_columns(layer):
    torch.manual_seed(0)
    model = cifar_resnet(8 if layer.startswith("layer1") else 14, 4, 1, 3, seed=0).eval()
    for m in model.modules():   # non-trivial BatchNorm statistics and shifts
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(5, 1, 8, 8)
    ext = extract(model, x[:1], sparsity=0.5)
    full = NetworkSolution.full(ext.instance)
    sol = NetworkSolution({n: (s.rows, np.zeros_like(s.cols) if n == layer else s.cols) for n, s in full.items()})
    masked = apply(copy.deepcopy(model), sol, ext).eval()
    small, rep = compact(masked, sol, ext)
    # one table row per layer: the emptied one keeps its output rows and no column, the others are whole
    by_layer = {r["layer"]: r for r in rep.layers}
    assert len(by_layer) == len(rep.layers) == len(ext.layers)
    for name, r in by_layer.items():
        w = model.get_submodule(name).weight
        expected = (w.shape[0], 0, "empty") if name == layer else (w.shape[0], w[0].numel())
        assert (r["rows"], r["cols"], r["mode"])[:len(expected)] == expected, r
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), masked(x), atol=1e-5, rtol=1e-4)
