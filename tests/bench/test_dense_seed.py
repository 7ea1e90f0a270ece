"""``dense_seed``: one dense model (and data order) for report-card runs split by seeds over processes."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from rcprune.bench import feather, pareto, zeroshot  # noqa: E402
from rcprune.bench.demo import run_seed  # noqa: E402
from rcprune.cli import main  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402


def test_the_first_seed_unless_given():
    assert run_seed([2, 0]) == 2 and run_seed([2], 0) == 0
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(InvalidInstanceError, match="dense_seed must be a non-negative integer"):
            run_seed([0], bad)


def test_each_bench_keys_its_dense_model_by_it():
    base = pareto._config("mnist", [2], [0.9], 1, 1, ["group"], ["network-greedy"], None, 10, 5, False)
    assert base["seed"] == 2
    assert pareto._config("mnist", [2], [0.9], 1, 1, ["group"], ["network-greedy"], None, 10, 5, False,
                          dense_seed=0)["seed"] == 0
    assert pareto._config("mnist", [2], [0.9], 1, 1, ["group"], ["network-greedy"], None, 10, 5, True,
                          dense_seed=0)["seed"] == 0   # --quick too
    assert feather._config("mnist", [2], [0.9], 1, 0.01, False, ["magnitude"], 0)["seed"] == 0
    assert zeroshot._config("mnist", [2], [0.9], [], 1, 64, False, 0)["seed"] == 0
    assert zeroshot._config("mnist", [2], [0.9], [], 1, 64, False)["seed"] == 2


def test_refused_before_any_work(tmp_path):
    with pytest.raises(InvalidInstanceError, match="dense_seed"):
        pareto.run_pareto(tmp_path / "out", dense_seed=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what, module, name", [("pareto", pareto, "run_pareto"),
                                                ("feather", feather, "run_feather_bench"),
                                                ("zeroshot", zeroshot, "run_zeroshot")])
def test_cli_passes_it(tmp_path, monkeypatch, what, module, name):
    seen = {}

    def fake(out, **kwargs):
        seen.update(kwargs)
        raise InvalidInstanceError("stop here")

    monkeypatch.setattr(module, name, fake)
    assert main(["bench", what, "--out", str(tmp_path), "--seeds", "2", "--dense-seed", "0"]) == 2
    assert seen["dense_seed"] == 0 and list(seen["seeds"]) == [2]
