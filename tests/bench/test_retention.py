"""The retention benchmark runs on the digits data and reports consistent rows."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from rcprune.bench.retention import _patches, bench_retention, digits_layer  # noqa: E402


def test_patches_match_a_direct_convolution():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 8, 8, 3))
    kernel = rng.random((3, 3, 3))            # (C, kh, kw)
    out = (_patches(maps) @ kernel.reshape(-1)).reshape(2, 8, 8)
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.zeros((2, 8, 8))
    for y in range(8):
        for x in range(8):
            direct[:, y, x] = np.einsum("byxc,cyx->b", padded[:, y:y + 3, x:x + 3, :], kernel)
    assert np.allclose(out, direct)


def test_bench_rows():
    rows = bench_retention(channels=(1, 2), out_channels=4, time_limit=30)
    methods = {r["method"] for r in rows}
    assert methods == {"magnitude", "diagonal", "retention-greedy", "retention-annealing", "retention-genetic",
                       "retention-exact"}
    for layer in ({r["layer"] for r in rows}):
        by = {r["method"]: r for r in rows if r["layer"] == layer}
        assert by["retention-exact"]["status"] == "optimal"
        exact = by["retention-exact"]["cost"]
        for r in by.values():
            assert r["cost"] >= exact - 1e-9 * (1 + exact)
            assert r["refit_cost"] <= r["cost"] + 1e-9 * (1 + r["cost"])
        assert by["retention-annealing"]["cost"] <= by["retention-greedy"]["cost"] + 1e-9
        assert by["magnitude"]["retained_small"] == 0


def test_digits_hessian_is_correlated():
    inst = digits_layer(1, 2)
    h = inst.hessian
    corr = h / np.sqrt(np.outer(np.diag(h), np.diag(h)))
    assert corr[4, 5] > 0.5   # neighbouring pixels of the digits are strongly correlated
