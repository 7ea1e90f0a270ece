"""The rcprune command line, called in-process."""
import json

import pytest

import rcprune
from rcprune import load_solution
from rcprune.bounds.network import network_lower_bound
from rcprune.cli import main
from tests.checks import expected_gap


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_solve_default_instance_prints_a_table(capsys):
    code, out, _ = run(capsys, "solve", "--method", "top-rows")
    assert code == 0
    assert "instance laplace-64x576" in out and "top-rows" in out and "cost" in out


def test_solve_json_and_out_file(capsys, tmp_path):
    out_path = tmp_path / "sol.npz"
    code, out, _ = run(capsys, "solve", "planted-30x40", "--method", "top-rows", "--json", "--out", str(out_path))
    assert code == 0
    data = json.loads(out)
    assert data["instance"] == "planted-30x40" and data["results"][0]["method"] == "top-rows"
    sol, meta = load_solution(out_path)
    assert sol.rows.shape == (30,) and meta["cost"] == pytest.approx(data["results"][0]["cost"])


def test_solve_instance_file_with_budget_override(capsys, tmp_path):
    f = tmp_path / "i.npz"
    assert run(capsys, "instances", "generate", "uniform-12x16", "--out", str(f))[0] == 0
    code, out, _ = run(capsys, "solve", str(f), "--shape", "3", "4", "--method", "top-rows", "--json")
    res = json.loads(out)["results"][0]
    assert code == 0 and (res["kept_rows"], res["kept_cols"]) == (3, 4)


@pytest.mark.parametrize("argv, message", [
    (["solve", "missing.npz"], "does not exist"),
    (["solve", "nonsense-name"], "neither an instance file nor a library instance"),
    (["solve", "--density", "2"], "density must be in"),
    (["solve", "--method", "nope"], "unknown method 'nope'"),
    (["solve", "--method", "top-rows", "--option", "x"], "KEY=VALUE"),
    (["solve", "--method", "top-rows", "--option", "x=1"], "unknown option"),
    (["instances", "show"], "needs a NAME"),
    (["instances", "show", "zzz"], "unknown instance"),
])
def test_errors_are_clear_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_instances_list_and_show(capsys):
    code, out, _ = run(capsys, "instances", "list")
    assert code == 0 and "laplace-512x4608" in out and "planted-30x40" in out
    code, out, _ = run(capsys, "instances", "show", "planted-30x40")
    assert code == 0 and json.loads(out)["metadata"]["proven"] is True


def test_bench_kernels_small(capsys):
    code, out, _ = run(capsys, "bench", "kernels", "--m", "16", "--n", "32")
    assert code == 0 and "row move" in out and "speedup" in out


def test_verify_bounds_command(capsys):
    code, out, _ = run(capsys, "verify-bounds", "--n", "200", "--max-side", "4")
    assert code == 0 and "greedy-row-column" in out and "worst ratio" in out


def test_bench_solvers_on_one_small_instance(capsys):
    code, out, _ = run(capsys, "bench", "solvers", "--instances", "laplace-12x16", "--time-limit", "1", "--quick")
    assert code == 0
    assert "enumeration" in out and "optimal" in out and "annealing within 0.5%" in out and "moves/s" in out
    assert "numba vs numpy on the same chain" in out and "hot 5000-move chain" in out


def test_bench_bounds_on_one_small_instance(capsys):
    code, out, _ = run(capsys, "bench", "bounds", "--instances", "laplace-12x16", "--sparsity", "0.9",
                       "--time-limit", "0.5")
    assert code == 0 and "certified gaps" in out and "laplace-12x16" in out and "lower_bound" in out


def test_bench_latency_quick(capsys):
    pytest.importorskip("torchvision")
    code, out, _ = run(capsys, "bench", "latency", "--quick", "--batch", "2", "--size", "32", "--repeats", "1")
    assert code == 0 and "rc-auto" in out and "dense-cl" in out and "speedup_over_mac_ratio" in out
    code, out, _ = run(capsys, "bench", "latency", "--quick", "--batch", "2", "--size", "32", "--repeats", "1",
                       "--weighting", "mean", "--breakdown")
    assert code == 0 and "weighting mean" in out
    assert "where the time goes" in out and "gather/scatter" in out and "batchnorm" in out


def test_solve_a_library_network_and_save_its_solution(capsys, tmp_path):
    from rcprune.network.generate import get_network
    from rcprune.network.io import load_network_solution

    out_path = tmp_path / "net-sol.npz"
    code, out, _ = run(capsys, "solve", "residual-downsample", "--json", "--out", str(out_path))
    assert code == 0
    data = json.loads(out)
    assert data["results"][0]["method"] == "network-greedy" and data["results"][0]["feasible"]
    sol, meta = load_network_solution(out_path)
    net = get_network("residual-downsample")
    assert set(sol) == set(net.layer_names) and meta["cost"] == pytest.approx(data["results"][0]["cost"])


def test_solve_and_bound_a_network_file(capsys, tmp_path):
    from rcprune.network.generate import chain_network
    from rcprune.network.io import load_network, save_network

    path = save_network(chain_network(3, budget=18), tmp_path / "chain.npz")
    code, out, _ = run(capsys, "solve", str(path), "--method", "network-greedy,network-annealing", "--sparsity", "0.5")
    assert code == 0 and "network-annealing" in out and "dead_channels" in out
    code, out, _ = run(capsys, "bound", str(path), "--json")
    row = json.loads(out)
    assert code == 0 and row["solver"] == "network-greedy" and row["bound_method"] == "network"
    net = load_network(path)
    greedy, bound = rcprune.solve(net, method="network-greedy"), network_lower_bound(net)
    assert row["cost"] == greedy.cost and row["lower_bound"] == min(bound.bound, greedy.cost)
    assert row["gap"] == pytest.approx(expected_gap(row["cost"], row["lower_bound"]), abs=1e-12)
    assert len(row["per_layer"]) == net.n_layers == 3 and row["per_layer"] == json.loads(json.dumps(bound.per_layer))


def test_solve_a_macs_budgeted_network_file(capsys, tmp_path):
    from rcprune.network.generate import chain_network
    from rcprune.network.io import save_network

    path = save_network(chain_network(3, budget=18).replace(measure="macs", budget=None, density=0.5),
                        tmp_path / "macs.npz")
    code, out, _ = run(capsys, "solve", str(path), "--method", "network-greedy,network-cpsat", "--sparsity", "0.6")
    assert code == 0 and "MACs (macs)" in out and "spend" in out and "share 0.4" in out
    code, out, _ = run(capsys, "solve", str(path), "--budget", "1", "--json")
    assert code == 2


def test_network_options_that_do_not_apply_are_refused(capsys):
    assert main(["solve", "chain3", "--shape", "2", "2"]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main(["bound", "chain3", "--method", "topk"]) == 2
    assert "network bound" in capsys.readouterr().err
