"""Values recomputed from a result's own fields, for assertions that a wrong answer breaks."""
from __future__ import annotations


def expected_gap(cost: float, lower_bound: float) -> float:
    """The certified gap (cost - lower_bound) / cost, 0 at cost <= 0, never negative."""
    return 0.0 if cost <= 0 else max(0.0, (cost - lower_bound) / cost)


def accuracy(model, loader) -> float:
    """Top-1 accuracy recomputed here: the share of argmax predictions equal to the labels (eval mode)."""
    import torch

    was = model.training
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for x, y in loader:
            hits += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    model.train(was)
    return hits / total
