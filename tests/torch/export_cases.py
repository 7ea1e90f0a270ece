"""Compacted models in every form, for the export and saved-model tests: ``compacted(case)`` gives
``(compacted model, example inputs, masked model)``.

Cases (small inputs, so the suite stays fast):

- ``resnet18-rc90-im2col`` / ``resnet18-rc90-conv``: ResNet-18, RC pruned at 90% (network-greedy), partial
  layers as ``"im2col"`` or ``"conv-zeros"``; layers without kept columns are ``"empty"``.
- ``resnet18-channel50``: ResNet-18 channel pruned (about 40% of the channels dropped): every conv a smaller
  dense conv, gathered input channels.
- ``cifar20-rc50`` / ``cifar20-rc90``: the CIFAR ResNet-20 at 50% and 90%, ``partial="auto"``.
- ``cifar20-random-train``: the CIFAR ResNet-20 with random rows and columns per layer, compacted in train
  mode: residual adds of different channel subsets (``ChannelScatterAdd``) and unfolded BatchNorms.
- ``cifar20-dead``: the first five layers without kept rows (``"empty"`` convs of one zero channel).
- ``excluded``: a grouped conv with a channel multiplier and a cosine excluded from pruning:
  ``ChannelScatter`` puts the pruned tensor back to full size before them.
- ``coupled``: a depthwise conv, a grouped conv and a squeeze-excitation gate (:class:`Coupled`) with random
  rows and columns: ``GroupedConv`` (padded where its groups keep different numbers of channels) and
  ``ChannelSelect``.
"""
from __future__ import annotations

import copy
import functools
import operator

import numpy as np
import torch
import torchvision

import rcprune
from rcprune.network.model import NetworkSolution
from rcprune.torch import apply, compact, extract
from rcprune.torch.models import cifar_resnet, randomize_batchnorm

CASES = ("resnet18-rc90-im2col", "resnet18-rc90-conv", "resnet18-channel50", "cifar20-rc50", "cifar20-rc90",
         "cifar20-random-train", "cifar20-dead", "excluded", "coupled")


class Excluded(torch.nn.Module):
    """A grouped conv with a channel multiplier (no channel tie) and a cosine, both excluded from pruning."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.g = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.b = torch.nn.Conv2d(8, 4, 1)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = torch.cos(self.b(self.g(torch.relu(self.a(x)))))
        return self.fc(h.flatten(1))


class Coupled(torch.nn.Module):
    """A depthwise conv (stride 2), a grouped conv (2 groups of 4, with bias) in a residual block, and a
    squeeze-excitation gate (torchvision's) on another conv's output; inputs ``(n, 3, 8, 8)``."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import SqueezeExcitation

        bn = torch.nn.BatchNorm2d
        self.a, self.a_bn = torch.nn.Conv2d(3, 8, 3, padding=1), bn(8)
        self.dw, self.dw_bn = torch.nn.Conv2d(8, 8, 3, padding=1, stride=2, groups=8, bias=False), bn(8)
        self.g, self.g_bn = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), bn(8)
        self.b = torch.nn.Conv2d(8, 6, 1)
        self.se = SqueezeExcitation(6, 3)
        self.c = torch.nn.Conv2d(6, 6, 3, padding=1, stride=2)
        self.fc = torch.nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        h = torch.relu(self.a_bn(self.a(x)))
        h = torch.relu(self.dw_bn(self.dw(h)))
        h = torch.relu(self.g_bn(self.g(h))) + h
        h = self.se(torch.relu(self.b(h)))
        return self.fc(torch.relu(self.c(h)).flatten(1))


def _base(case):
    torch.manual_seed(0)
    if case.startswith("resnet18"):
        return randomize_batchnorm(torchvision.models.resnet18(num_classes=10)), torch.randn(2, 3, 32, 32)
    if case == "excluded":
        return Excluded().eval(), torch.randn(2, 2, 4, 4)
    if case == "coupled":
        return randomize_batchnorm(Coupled()), torch.randn(2, 3, 8, 8)
    return randomize_batchnorm(cifar_resnet(depth=20, width=8, seed=0)), torch.randn(2, 3, 16, 16)


def compacted(case: str):
    """``(compacted model, example inputs, masked model)``; the masked model is a copy of one pruned once
    per case (the cases with the same pruning share it)."""
    masked, x, sol, ext, partial = _pruned(case)
    model = copy.deepcopy(masked)
    if case == "cifar20-random-train":
        model.train()
    small, _ = compact(model, sol, ext, partial=partial)
    return small, x, model


@functools.lru_cache(maxsize=None)
def _pruned(case: str):
    if case.startswith("resnet18-rc90-"):
        masked, x, sol, ext, _ = _pruned("resnet18-rc90")
        return masked, x, sol, ext, case.rsplit("-", 1)[1]
    model, x = _base(case)
    partial = "auto"
    if case == "excluded":
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = extract(model, x[:1], unsupported="exclude", sparsity=0.5)
        sol = rcprune.solve(ext.instance, method="network-greedy").solution
    elif case == "resnet18-channel50":
        ext = extract(model, x[:1])
        rng = np.random.default_rng(0)
        keep = {g.name: rng.random(g.size) < 0.6 for g in ext.instance.groups if not (g.input or g.protected)}
        sol = NetworkSolution.from_channels(ext.instance, keep)
    elif case in ("cifar20-random-train", "coupled"):
        ext = extract(model, x[:1])
        inst, rng = ext.instance, np.random.default_rng(0)
        sol = NetworkSolution({li.name: (inst.fixed_rows(li.name) | (rng.random(li.rows) < 0.8),
                                         rng.random(li.cols) < 0.5) for li in inst.layers})
    elif case == "cifar20-dead":
        ext = extract(model, x[:1], sparsity=0.5)
        sol = rcprune.solve(ext.instance, method="network-greedy").solution
        layers = {n: (s.rows.copy(), s.cols.copy()) for n, s in sol.items()}
        for n in ext.instance.layer_names[:5]:
            layers[n][0][:] = False
        sol = NetworkSolution(layers)
    else:
        sparsity = 0.5 if "rc50" in case else 0.9
        ext = extract(model, x[:1], sparsity=sparsity)
        sol = rcprune.solve(ext.instance, method="network-greedy").solution
    apply(model, sol, ext)
    return model, x, sol, ext, partial


def forms(model) -> set[str]:
    """The compacted forms ``model`` holds: RCConv2d modes, and the class names of the other modules."""
    out = set()
    for m in model.modules():
        out.add(f"RCConv2d:{m.mode}" if type(m).__name__ == "RCConv2d" else type(m).__name__)
    return out


def hand_built_forms():
    """``(GraphModule, inputs)``: every compacted form, built by hand (compact reaches ``ChannelScatter`` and
    some ``ChannelScatterAdd`` paths only in corner cases): an im2col, a gathered conv and an empty conv;
    scatters and scatter-adds of 4-d and 2-d tensors; an ``RCLinear`` on gathered features; two outputs."""
    import torch.fx as fx
    import torch.nn.functional as F

    from rcprune.torch.compact_forms import ChannelScatter, ChannelScatterAdd, RCConv2d, RCLinear

    g = torch.Generator().manual_seed(0)
    geo = dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    cols = np.sort(np.random.default_rng(0).choice(36, 10, replace=False))
    root = {
        "im2col": RCConv2d(torch.randn(3, 10, generator=g), torch.randn(3, generator=g), None, cols, mode="im2col", **geo),
        "gathered": RCConv2d(torch.randn(4, 2, 3, 3, generator=g).contiguous(memory_format=torch.channels_last),
                             None, [1, 3], None, mode="conv", **geo),
        "empty": RCConv2d(torch.zeros(2, 0), torch.randn(2, generator=g), None, None, mode="empty", **geo),
        "scatter": ChannelScatter([0, 2, 5], 6),
        "add_a": ChannelScatterAdd([1, 2, 4, 5], None, 6),      # a holds a subset, b all channels
        "add_ab": ChannelScatterAdd([0, 2, 4], [1, 3, 4], 5),   # both subsets
        "add_b": ChannelScatterAdd(None, [0, 5], 6),            # b holds a subset
        "scatter2d": ChannelScatter([1, 3], 4),
        "add2d": ChannelScatterAdd([0, 1], [1, 3], 4),
        "fc": RCLinear(torch.randn(3, 3, generator=g), torch.randn(3, generator=g), [0, 2, 3]),
    }
    gr = fx.Graph()
    x = gr.placeholder("x")
    c1 = gr.call_module("im2col", (x,))
    s1 = gr.call_module("scatter", (c1,))
    c2 = gr.call_module("gathered", (x,))
    a = gr.call_module("add_a", (c2, s1))
    r = gr.call_function(F.relu, (c1,))
    ab = gr.call_module("add_ab", (c1, r))
    e = gr.call_module("empty", (x,))
    b = gr.call_module("add_b", (a, e))
    p = gr.call_function(torch.flatten, (gr.call_function(F.adaptive_avg_pool2d, (e, 1)), 1))
    s2 = gr.call_module("scatter2d", (p,))
    q = gr.call_function(torch.flatten, (gr.call_function(F.adaptive_avg_pool2d, (ab, 1)), 1))
    a2 = gr.call_module("add2d", (p, gr.call_function(operator.getitem, (q, (slice(None), slice(0, 2))))))
    out = gr.call_module("fc", (gr.call_function(torch.add, (s2, a2)),))
    gr.output((gr.call_method("sum", (b,), {"dim": 1}), out))
    return fx.GraphModule(root, gr, class_name="HandBuilt").eval(), torch.randn(2, 4, 6, 6, generator=g)
