"""Checked access to the batches of a data loader: a clear error for anything that is not one.

>>> import torch
>>> input_tensor((torch.zeros(2, 3), torch.ones(2)), "calibration_loader").shape
torch.Size([2, 3])
"""
from __future__ import annotations

import torch

from rcprune.validation import InvalidInstanceError

__all__ = ["check_loader", "check_reusable", "input_tensor", "labelled_batch"]


def check_loader(loader, what: str):
    """Refuse what is not an iterable of batches (a lone tensor, a string, a number, None)."""
    if isinstance(loader, (str, bytes, torch.Tensor)) or not hasattr(loader, "__iter__"):
        raise InvalidInstanceError(f"{what} must be an iterable of batches (a DataLoader or a list of tensors), "
                                   f"got {type(loader).__name__}")
    return loader


def check_reusable(loader, what: str, why: str):
    """Refuse a one-pass iterator where the data is read more than once (``why`` says by whom)."""
    check_loader(loader, what)
    if iter(loader) is loader:
        raise InvalidInstanceError(f"{why} passes over the {what} data once per layer: give a list or a DataLoader, "
                                   "not an iterator")
    return loader


def input_tensor(batch, what: str) -> torch.Tensor:
    """The inputs of a batch: the batch itself, or the first item of an ``(inputs, ...)`` tuple."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if not isinstance(x, torch.Tensor):
        raise InvalidInstanceError(f"{what} must yield tensors or (inputs, ...) tuples, got a batch of "
                                   f"{type(x).__name__}")
    return x


def labelled_batch(batch, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of a training batch."""
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2
            and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor)):
        raise InvalidInstanceError(f"{what} must yield (inputs, targets) pairs of tensors, got {type(batch).__name__}")
    return batch[0], batch[1]
