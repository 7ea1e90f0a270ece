"""Whether a model's output still depends on its input: a pruned model can be connected from the input to
the output in its masks and yet compute a constant (one kept column reading a channel that a ReLU zeroes
for every input), which no structural check sees. Two forward passes tell: the example inputs and a
seeded perturbation of them.

>>> import torch
>>> responds_to_input(torch.nn.Linear(3, 2), torch.randn(1, 3))
True
>>> dead = torch.nn.Linear(3, 2)
>>> with torch.no_grad():
...     _ = dead.weight.zero_()
>>> responds_to_input(dead, torch.randn(1, 3))
False
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["responds_to_input"]


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in a (nested) output: a tensor, a tuple / list, a dict's values."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def responds_to_input(model: nn.Module, example_inputs, seed: int = 0) -> bool:
    """Whether any output tensor of ``model`` (in its current mode, under no_grad) differs between
    ``example_inputs`` and the same inputs with seeded standard-normal noise added to every floating
    tensor. O(two forward passes)."""
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    gen = torch.Generator().manual_seed(seed)
    moved = tuple(x + torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
                  if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs)
    with torch.no_grad():
        a, b = _tensors(model(*inputs)), _tensors(model(*moved))
    return any(not torch.equal(x, y) for x, y in zip(a, b))
