"""The digits data set (``sklearn.datasets.load_digits``: 1797 8x8 images, 10 classes) as PyTorch
tensors and loaders: a fixed stratified train/test split, bilinear upsampling, normalization by the
training set's mean and standard deviation.

>>> xtr, ytr, xte, yte = digits_tensors(size=16)
>>> tuple(xtr.shape[1:]), len(xtr) + len(xte), int(ytr.max())
((1, 16, 16), 1797, 9)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from rcprune.validation import InvalidInstanceError

__all__ = ["digits_tensors", "digits_loaders"]


def digits_tensors(size: int = 16, *, test_fraction: float = 0.25, split_seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: images ``(N, 1, size, size)`` float32, labels int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 64:
        raise InvalidInstanceError(f"size must be an integer in [8, 64], got {size!r}")
    d = load_digits()
    idx_tr, idx_te = train_test_split(np.arange(len(d.target)), test_size=test_fraction,
                                      random_state=split_seed, stratify=d.target)
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = torch.from_numpy(idx_tr), torch.from_numpy(idx_te)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return x[tr], y[tr], x[te], y[te]


def digits_loaders(size: int = 16, *, batch_size: int = 64, seed: int = 0, test_fraction: float = 0.25):
    """``(train_loader, test_loader)``; the training loader shuffles with a generator seeded by ``seed``."""
    xtr, ytr, xte, yte = digits_tensors(size, test_fraction=test_fraction)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(xtr, ytr), batch_size=batch_size, shuffle=True, generator=g)
    test = DataLoader(TensorDataset(xte, yte), batch_size=256, shuffle=False)
    return train, test
