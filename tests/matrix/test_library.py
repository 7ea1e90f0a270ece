"""The instance library: committed files equal their generators, the index is consistent, generators are seeded."""
import numpy as np
import pytest

import rcprune
from rcprune import InvalidInstanceError, evaluate
from rcprune import library
from rcprune.matrix.generate import generate


def test_committed_files_match_their_generators():
    for name, spec in library.CATALOGUE.items():
        if spec["stored"]:
            stored = rcprune.load_instance(library.instance_path(name))
            assert stored == library.generate_named(name), name


def test_index_rows_are_consistent():
    idx = library.index()
    assert set(idx) == set(library.names())
    for name, row in idx.items():
        assert row["best_known_cost"] is not None, f"{name} has no best known cost"
        if row["best_lower_bound"] is not None:
            assert row["best_lower_bound"] <= row["best_known_cost"] * (1 + 1e-9) + 1e-9
        assert row["proven"] == (row["best_lower_bound"] is not None
                                 and row["best_known_cost"] - row["best_lower_bound"] <= 1e-9 * max(1, row["best_known_cost"]))


def test_best_known_solutions_are_not_better_than_the_index_says():
    # Any solver result on a library instance must be >= a proven lower bound.
    for name in ("uniform-12x16", "planted-30x40", "bipartite-16x24"):
        inst = library.get(name)
        res = rcprune.solve(inst, method="top-rows")
        lb = inst.metadata.get("best_lower_bound")
        if lb is not None:
            assert res.cost >= lb - 1e-9


def test_planted_optimum_is_the_block():
    inst = generate("planted", 9, 11, seed=4, rows=3, cols=4)
    sol = rcprune.Solution.from_indices(9, 11, inst.metadata["planted_rows"], inst.metadata["planted_cols"])
    ev = evaluate(inst, sol)
    assert ev.feasible and ev.cost == pytest.approx(inst.metadata["best_known_cost"])


def test_planted_optimum_against_brute_force():
    from tests.matrix.bruteforce import brute_force

    for seed in range(5):
        inst = generate("planted", 6, 7, seed=seed, rows=2, cols=3)
        cost, rows, cols = brute_force(inst.scores, budget=inst.budget)
        assert cost == pytest.approx(inst.metadata["best_known_cost"], rel=1e-12)
        assert np.flatnonzero(rows).tolist() == inst.metadata["planted_rows"]


def test_generators_are_seeded_and_families_look_right():
    a = generate("laplace", 20, 30, seed=5, density=0.1)
    assert a == generate("laplace", 20, 30, seed=5, density=0.1)
    assert not np.array_equal(a.scores, generate("laplace", 20, 30, seed=6, density=0.1).scores)
    b = generate("bipartite", 10, 10, seed=1, budget=10, p=0.4)
    assert set(np.unique(b.scores)) <= {0.0, 1.0}
    assert (generate("uniform", 5, 5, seed=0, budget=3).scores < 1).all()


@pytest.mark.parametrize("call, message", [
    (lambda: generate("cauchy", 3, 3, budget=1), "unknown instance family"),
    (lambda: generate("uniform", 0, 3, budget=1), "m must be a positive integer"),
    (lambda: generate("planted", 3, 3, rows=4, cols=1), "does not fit"),
    (lambda: generate("planted", 3, 3, rows=1), "exactly the parameters rows and cols"),
    (lambda: generate("planted", 3, 3, rows=1, cols=1, budget=2), "sets its own budget"),
    (lambda: generate("bipartite", 3, 3, budget=1, p=2), "p must be in"),
    (lambda: generate("uniform", 3, 3, budget=1, p=2), "takes no parameters"),
    (lambda: library.get("nope"), "unknown instance 'nope'"),
])
def test_bad_generator_calls(call, message):
    with pytest.raises(InvalidInstanceError, match=message):
        call()


def test_large_instances_are_generated_on_demand_not_stored():
    spec = library.spec("laplace-512x4608")
    assert not spec["stored"] and not library.instance_path("laplace-512x4608").exists()


def test_record_keeps_the_best_and_marks_proofs(tmp_path):
    idx = tmp_path / "index.json"
    assert library.record("uniform-12x16", cost=10.0, method="a", path=idx)
    assert not library.record("uniform-12x16", cost=11.0, method="b", path=idx)
    assert library.record("uniform-12x16", cost=9.0, method="c", lower_bound=8.0, path=idx)
    import json

    row = json.loads(idx.read_text())["uniform-12x16"]
    assert (row["best_known_cost"], row["best_method"], row["best_lower_bound"], row["proven"]) == (9.0, "c", 8.0, False)
    library.record("uniform-12x16", cost=9.0, method="d", lower_bound=9.0, path=idx)
    assert json.loads(idx.read_text())["uniform-12x16"]["proven"] is True
    with pytest.raises(RuntimeError, match="exceeds the best known cost"):
        library.record("uniform-12x16", cost=9.0, method="e", lower_bound=9.5, path=idx)


def test_jit_cache_is_switched_off_without_a_writable_location(monkeypatch):
    import os

    from rcprune import jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    assert jit._cache_possible() is False
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere")
    assert jit._cache_possible() is True
