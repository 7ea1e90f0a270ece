"""The adapter on a CUDA device: prune, compact, the latency table, fine-tuning and export's check run where
the model and inputs live (the device the user chose). Skipped without a GPU: the rest of the suite runs the
same code on the CPU."""
import copy

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from rcprune.torch import finetune, latency_table, prune  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from rcprune.torch.rcmask import keep_mask  # noqa: E402

CUDA = torch.device("cuda")


def _model():
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=3, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    return model, x, y


@pytest.fixture(autouse=True)
def _exact_matmul():
    was = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = was


@pytest.mark.parametrize("partial", ["auto", "im2col", "conv"])
def test_prune_and_compact_on_the_gpu_match_the_masked_model(partial):
    model, x, _ = _model()
    model, x = model.to(CUDA).eval(), x.to(CUDA)
    small, report = prune(model, x[:1], sparsity=0.8, method="network-greedy", partial=partial)
    masked, _ = prune(model, x[:1], sparsity=0.8, method="network-greedy", compact=False)
    assert all(p.device.type == "cuda" for p in small.parameters())
    with torch.no_grad():
        got, want = small(x), masked.eval()(x)
    assert got.device.type == "cuda"
    assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())
    assert report.weights_after < report.weights_before


def test_latency_table_and_budget_on_the_gpu():
    model, x, _ = _model()
    table = latency_table(model, x[:4], device="cuda", cache=False, rows=2, cols=2, repeats=2, warmup=1)
    assert table.metadata["device"].startswith("cuda") and table.dense_ms > 0
    small, report = prune(model, x[:4], budget="latency", speedup=1.5, latency_table=table, device="cuda")
    assert report.predicted_ms is not None and report.predicted_ms <= table.dense_ms


def test_finetune_on_the_gpu_keeps_pruned_weights_zero():
    model, x, y = _model()
    masked, _ = prune(model, x[:1], sparsity=0.8, method="network-greedy", compact=False)
    before = copy.deepcopy(masked)
    finetune(masked, [(x, y)], epochs=2, device="cuda", progress=False)
    for (name, m), (_, b) in zip(masked.named_modules(), before.named_modules()):
        keep = keep_mask(m)
        if keep is not None and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert m.weight.device.type == "cuda"
            assert not m.weight[~keep].any(), name
            assert not torch.equal(m.weight.detach().cpu(), b.weight.detach()), name   # it trained
