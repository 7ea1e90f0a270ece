"""A pruned model that computes a constant is reported: the output check and prune's warning."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from rcprune.torch.input_dependence import responds_to_input


class _Pair(nn.Module):
    def __init__(self, dead: bool):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)
        if dead:
            with torch.no_grad():
                self.a.weight.zero_()
                self.b.weight.zero_()

    def forward(self, x, y):
        return {"a": torch.relu(self.a(x)), "b": (self.b(y), self.b(y).sum())}


def test_nested_outputs_and_several_inputs():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3), torch.randn(2, 4)
    assert responds_to_input(_Pair(dead=False), (x, y))
    assert not responds_to_input(_Pair(dead=True), (x, y))
    relu_dead = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with torch.no_grad():
        relu_dead[0].bias.fill_(-100.0)
        relu_dead[0].weight.fill_(0.01)
    assert not responds_to_input(relu_dead, x)          # every pre-activation negative: zero for any input
    assert responds_to_input(nn.Linear(3, 2), torch.randn(1, 3), seed=5)


def test_prune_warns_when_the_pruned_model_computes_a_constant():
    """torchvision's squeezenet1_0 (classifier initialized 100x smaller than the convs): at 50% the greedy
    keeps one classifier column, a channel the final ReLU zeroes; a channel floor keeps it working."""
    import torchvision

    from rcprune.torch import prune

    torch.manual_seed(1)
    model = torchvision.models.squeezenet1_0(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match=r"no longer depends on its input .*classifier\.1 keeps 1 of 512"):
        small, _ = prune(model, x, sparsity=0.5)
    assert not responds_to_input(small, x)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no longer depends on its input")
        small, _ = prune(model, x, sparsity=0.5, min_channels=0.25)
    assert responds_to_input(small, x)


def test_no_warning_when_the_dense_model_is_constant_too():
    import torchvision

    from rcprune.torch import prune

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        model.fc.weight.zero_()        # the dense output is its bias, whatever the input
    x = torch.randn(1, 3, 32, 32)
    assert not responds_to_input(model, x)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no longer depends on its input")
        small, report = prune(model, x, sparsity=0.5)
    assert report.kept_weights <= report.budget
