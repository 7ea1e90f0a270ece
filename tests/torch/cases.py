"""A small CIFAR-style ResNet with calibrated BatchNorm statistics and a batch of data, for torch tests."""
import torch

from rcprune.torch.models import cifar_resnet


def calibrated_resnet(batch: int = 48, size: int = 12):
    """``(model in eval mode, inputs, labels)``: ResNet-8 width 8, one input channel, four classes; the
    BatchNorm running statistics come from one pass over the inputs."""
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, size, size, generator=g)
    y = torch.randint(0, 4, (batch,), generator=g)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x, y


def flop_time_calls(calls, *, repeats, warmup, device):
    """:func:`rcprune.torch.latency_grid.time_calls` with counted FLOPs for times (1 ms per million + 0.01 ms
    per call): deterministic, whatever the machine's load."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    with torch.inference_mode():
        for key, (module, args) in calls.items():
            with FlopCounterMode(display=False) as counter:
                module(*args)
            out[key] = 0.01 + counter.get_total_flops() * 1e-6
    return out


def flop_timed_latency_table(model, x, **kwargs):
    """A latency table whose "times" are counted FLOPs (:func:`flop_time_calls`): deterministic, so tests of
    the budget logic do not depend on the machine's load."""
    import pytest

    from rcprune.torch import latency_grid
    from rcprune.torch.latency_table import latency_table

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(latency_grid, "time_calls", flop_time_calls)
        return latency_table(model, x, cache=False, **kwargs)


def compact_matching(model, solution, extraction, x):
    """Mask ``model`` with ``solution``, compact it and check the compacted outputs equal the masked ones on
    ``x`` within 1e-9 relative (float64 models) and are not all zero; returns the compacted model."""
    from rcprune.torch import apply, compact

    apply(model, solution, extraction)
    small, _ = compact(model, solution, extraction)
    with torch.no_grad():
        want, got = model(x), small(x)
    assert want.abs().max() > 0
    assert (got - want).abs().max() <= 1e-9 * want.abs().max()
    return small


def random_solution(inst, seed, p_row=0.6, p_col=0.7):
    """A random network solution of ``inst``: each row kept with probability ``p_row`` (fixed rows always),
    each column with ``p_col``."""
    import numpy as np

    from rcprune.network.model import NetworkSolution

    rng = np.random.default_rng(seed)
    return NetworkSolution({li.name: (inst.fixed_rows(li.name) | (rng.random(li.rows) < p_row),
                                      rng.random(li.cols) < p_col) for li in inst.layers})
