"""prune fine-tunes the compacted model where it trains the masked model's kept weights, and only there."""
import copy

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from rcprune.torch import compact, finetune, prune  # noqa: E402
from rcprune.torch.compact_finetune import fold_batchnorms, trains_only_kept_weights  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402


def _model_and_loader():
    """float64: in float32 the two trainings differ by rounding, which ReLU kinks and train-mode BatchNorm
    amplify (measured: 2% of the outputs after 8 steps of a ResNet-20; 5.6e-16 in float64)."""
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=0).eval().double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 12, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (96,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    return model, x, loader


def _masked_then_compacted(model, x, loader, **kwargs):
    """The masked fine-tune, then compact: what prune did before."""
    masked, rep = prune(model, x[:1], sparsity=0.5, compact=False, **kwargs)
    finetune(masked, loader, 2, seed=0, progress=False)
    small, _ = compact(masked.eval(), rep.solution, rep.extraction, partial=kwargs.get("partial", "auto"))
    return small


@pytest.mark.parametrize("kwargs", [{"granularity": "group"}, {"granularity": "channel"},
                                    {"granularity": "column", "partial": "im2col"}])
def test_fine_tuning_the_compacted_model_is_the_masked_fine_tune(kwargs):
    model, x, loader = _model_and_loader()
    small, report = prune(model, x[:1], sparsity=0.5, finetune={"train_loader": loader, "epochs": 2, "seed": 0,
                                                                 "progress": False}, **kwargs)
    assert report.finetuned == "compacted" and len(report.history) == 2
    assert report.weights_after == report.kept_weights and not small.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules())   # folded after training
    want = _masked_then_compacted(model, x, loader, **kwargs)
    with torch.no_grad():
        got, ref = small(x), want(x)
    assert float(ref.std(0).mean()) > 1e-3                  # outputs that depend on the input
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10 * float(ref.abs().max()))


def test_zeros_that_training_would_move_keep_the_masked_fine_tune():
    model, x, loader = _model_and_loader()
    args = {"train_loader": loader, "epochs": 1, "seed": 0, "progress": False}
    _, report = prune(model, x[:1], sparsity=0.5, granularity="column", partial="conv", finetune=args)
    assert any(layer["mode"] == "conv-zeros" for layer in report.compacted.layers)
    assert report.finetuned == "masked"
    masked, report = prune(model, x[:1], sparsity=0.5, granularity="group", finetune=args, compact=False)
    assert report.finetuned == "masked" and report.compacted is None
    _, report = prune(model, x[:1], sparsity=0.5, granularity="group", finetune=dict(args, regenerate=True))
    assert report.finetuned == "masked"                      # regeneration needs the masked model's extraction


def test_options_and_runs_that_need_the_masked_model(monkeypatch):
    import rcprune.torch.distributed as dist
    from rcprune.torch.compact_finetune import needs_masked_model

    assert not needs_masked_model({"epochs": 1, "teacher": object(), "distributed": False})
    assert needs_masked_model({"sparse_training": "feather"}) and needs_masked_model({"checkpoint": "ft.pt"})
    monkeypatch.setattr(dist, "is_distributed", lambda: True)     # a torchrun launch
    assert needs_masked_model({"epochs": 1}) and not needs_masked_model({"distributed": False})


def test_a_padded_grouped_conv_does_not_train_only_kept_weights():
    from rcprune.torch.compact import CompactReport
    from rcprune.torch.compact_forms import GroupedConv

    padded = GroupedConv(torch.zeros(4, 1, 3, 3), None, [0, 0, 1, 1], [0, 2], groups=2, stride=(1, 1), padding=(1, 1),
                         dilation=(1, 1))
    plain = GroupedConv(torch.zeros(4, 1, 3, 3), None, None, None, groups=4, stride=(1, 1), padding=(1, 1),
                        dilation=(1, 1))
    report = CompactReport(0, 0, 0, 0, 0, 0, layers=({"layer": "c", "rows": 2, "cols": 9, "mode": "conv"},))
    assert not trains_only_kept_weights(torch.nn.Sequential(padded), report)
    assert trains_only_kept_weights(torch.nn.Sequential(plain), report)


def test_folding_after_compaction_equals_compact_folding():
    model, x, loader = _model_and_loader()
    masked, rep = prune(model, x[:1], sparsity=0.5, granularity="column", compact=False)
    finetune(masked, loader, 1, seed=0, progress=False)      # BatchNorm statistics that are not the defaults
    folded, _ = compact(copy.deepcopy(masked).eval(), rep.solution, rep.extraction)
    unfolded, _ = compact(masked.eval(), rep.solution, rep.extraction, fold_batchnorm=False)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    assert n_bn > 0
    with torch.no_grad():
        want = unfolded(x)
        fold_batchnorms(unfolded)
        got = unfolded(x)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules()) == \
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < n_bn
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got, folded(x), rtol=1e-9, atol=1e-12)


def test_batchnorm_in_training_mode_is_not_folded():
    model, x, _ = _model_and_loader()
    masked, rep = prune(model, x[:1], sparsity=0.5, granularity="group", compact=False)
    unfolded, _ = compact(masked.train(), rep.solution, rep.extraction, fold_batchnorm=False)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    assert n_bn > 0 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorms(unfolded).modules()) == n_bn
