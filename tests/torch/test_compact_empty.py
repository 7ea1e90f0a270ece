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
    assert any(r["layer"] == layer and r["cols"] == 0 and r["rows"] > 0 for r in rep.layers)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), masked(x), atol=1e-5, rtol=1e-4)
