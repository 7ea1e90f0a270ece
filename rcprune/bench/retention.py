"""Benchmark of small-weight retention on conv layers with real input statistics.

Inputs are real: the 8 x 8 images of ``sklearn.datasets.load_digits`` (1797 images, scaled to [0, 1]).
A layer with C_in input channels sees, for C_in = 1, the images themselves and, for C_in > 1, C_in feature
maps made by a fixed random first layer (a 3 x 3 convolution with N(0, 1/9) filters, zero padding, ReLU).
X holds the 3 x 3 patches (zero padding 1, stride 1) of those maps: n = 9 C_in rows, N = 1797 * 64
columns, and H = X X^T / N (+ damping). The weights W (C_out x n) are Laplace(0, 1): a stand-in for
trained weights until the torch adapter provides real layers.
"""
from __future__ import annotations

import numpy as np

from rcprune.retention.model import RetentionInstance, hessian_from_inputs, refit_error

__all__ = ["bench_retention", "digits_inputs", "digits_layer"]

DEFAULT_METHODS = ("magnitude", "diagonal", "retention-greedy", "retention-annealing", "retention-genetic",
                   "retention-exact")


def _patches(maps: np.ndarray) -> np.ndarray:
    """(B, 8, 8, C) maps -> (B * 64, 9 C) 3 x 3 patches with zero padding 1, ordered (C, kh, kw) like torch."""
    b, hgt, wid, c = maps.shape
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [padded[:, dy:dy + hgt, dx:dx + wid, :] for dy in range(3) for dx in range(3)]
    stacked = np.stack(cols, axis=-1)                     # (B, 8, 8, C, 9)
    return stacked.reshape(b * hgt * wid, c * 9)


def digits_inputs(in_channels: int, seed: int = 0, chunk: int = 256):
    """Iterator of (9 C_in, N_b) im2col input chunks of a 3 x 3 conv over the digits images (see module doc)."""
    from sklearn.datasets import load_digits  # optional dependency (extra "torch")

    images = load_digits().images.astype(np.float64) / 16.0          # (1797, 8, 8)
    rng = np.random.default_rng(seed)
    filters = rng.normal(scale=1.0 / 3.0, size=(9, in_channels))
    for lo in range(0, images.shape[0], chunk):
        maps = images[lo:lo + chunk, :, :, None]
        if in_channels > 1:
            first = _patches(maps) @ filters                          # random first layer
            maps = np.maximum(first, 0.0).reshape(maps.shape[0], 8, 8, in_channels)
        yield _patches(maps).T


def digits_layer(in_channels: int, out_channels: int, *, sparsity: float = 0.9, damping: float = 0.01,
                 seed: int = 0, scope: str = "row") -> RetentionInstance:
    """A retention instance: Laplace W (out_channels x 9 in_channels), H from the digits patches."""
    h = hessian_from_inputs(digits_inputs(in_channels, seed=seed))
    w = np.random.default_rng(seed + 1).laplace(size=(out_channels, 9 * in_channels))
    return RetentionInstance(w, h, sparsity=sparsity, scope=scope, damping=damping, objective="masked",
                             name=f"digits-conv-cin{in_channels}-cout{out_channels}")


def bench_retention(*, channels=(1, 2, 4, 8, 16), out_channels: int = 32, sparsity: float = 0.9,
                    damping: float = 0.01, methods=DEFAULT_METHODS, seed: int = 0,
                    time_limit: float | None = 60.0, exact_max_n: int = 20, refit: bool = True) -> list[dict]:
    """Reconstruction error of each method on each digits conv layer (one dict per layer and method).

    Exact runs only where n = 9 C_in <= ``exact_max_n`` (enumeration). Each row: layer, in_channels, n,
    m, k, method, cost (E after), magnitude_cost (E before), improvement (1 - E / E_magnitude),
    refit_cost, retained_small and its share of the kept weights, status, lower_bound, runtime.
    """
    from rcprune.solve import solve

    rows = []
    for c_in in channels:
        inst = digits_layer(c_in, out_channels, sparsity=sparsity, damping=damping, seed=seed)
        for method in methods:
            if method == "retention-exact" and inst.n > exact_max_n:
                continue
            res = solve(inst, method=method, seed=seed, time_limit=time_limit)
            rows.append({
                "layer": inst.name, "in_channels": c_in, "n": inst.n, "m": inst.m, "k": inst.k,
                "sparsity": 1.0 - inst.k / inst.n, "method": method, "cost": res.cost,
                "magnitude_cost": res.evaluation.magnitude_cost, "improvement": res.evaluation.improvement, "refit_cost": refit_error(inst, res.solution) if refit else None,
                "retained_small": res.evaluation.retained_small, "retained_small_share": res.evaluation.retained_small / max(1, res.kept_count),
                "status": res.status, "lower_bound": res.lower_bound, "runtime": res.runtime,
            })
    return rows
