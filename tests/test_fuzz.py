"""Bad input of every kind at every public entry point: only ``InvalidInstanceError`` (a ValueError) may
escape, and no file is left half-written.

Hypothesis throws wrong types, shapes, NaN/inf, negative and huge values, strings, bools and nested junk
at the constructors, ``solve``/``evaluate`` options, the file loaders (corrupt, truncated, wrong version)
and the command line (one line on stderr, exit code 2).
"""
from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rcprune
from rcprune.cli import main
from rcprune.files import atomic_write_bytes
from rcprune.network.io import load_network, load_network_solution, save_network
from rcprune.network.builder import NetworkBuilder

fuzz = settings(max_examples=150, deadline=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.binary(max_size=5),
)
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=3), inner, max_size=3),
                                                     st.tuples(inner, inner)), max_leaves=8)
matrices = st.one_of(
    junk,
    st.integers(0, 4).flatmap(lambda m: st.integers(0, 4).flatmap(
        lambda n: st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
                                    min_size=n, max_size=n), min_size=m, max_size=m))),
)


def only_invalid_instance_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except rcprune.InvalidInstanceError:
        return None


def _matrix_instance():
    return rcprune.Instance([[1.0, 2.0], [3.0, 4.0]], budget=2)


def _network_instance():
    b = NetworkBuilder("fuzz")
    x = b.input("x", 2)
    b.layer("fc", np.ones((2, 2)), x, protected=True)
    return b.build(budget=4)


def _retention_instance():
    return rcprune.RetentionInstance([[1.0, -2.0, 0.5]], np.eye(3), k=1, objective="masked")


@fuzz
@given(matrices, junk, junk, junk, junk, junk)
def test_instance_constructor(scores, budget, density, sparsity, name, metadata):
    only_invalid_instance_error(rcprune.Instance, scores, budget, density=density, sparsity=sparsity,
                                name=name if isinstance(name, str) and name else "x", metadata=metadata)
    only_invalid_instance_error(rcprune.Instance, [[1.0, 2.0]], sparsity=0.5, name=name)
    only_invalid_instance_error(rcprune.Instance, [[1.0, 2.0]], sparsity=0.5, metadata=metadata)
    only_invalid_instance_error(rcprune.Instance, [[1.0, 2.0]], shape=budget)


@fuzz
@given(matrices, matrices, junk, junk, junk, junk, junk)
def test_retention_constructor(weights, hessian, k, sparsity, scope, damping, name):
    only_invalid_instance_error(rcprune.RetentionInstance, weights, hessian, k=k, sparsity=sparsity)
    only_invalid_instance_error(rcprune.RetentionInstance, [[1.0, 2.0]], np.eye(2), k=1, scope=scope)
    only_invalid_instance_error(rcprune.RetentionInstance, [[1.0, 2.0]], np.eye(2), k=1, damping=damping)
    only_invalid_instance_error(rcprune.RetentionInstance, [[1.0, 2.0]], np.eye(2), k=1, name=name)
    only_invalid_instance_error(rcprune.hessian_from_inputs, weights, damping=damping)
    only_invalid_instance_error(rcprune.refit, weights, hessian, k)


@fuzz
@given(matrices, junk, junk, junk, junk, junk)
def test_network_builder_and_constructor(scores, channels, budget, sparsity, weighting, metadata):
    b = NetworkBuilder("fuzz")
    x = only_invalid_instance_error(b.input, "x", channels)
    if x is not None:
        only_invalid_instance_error(b.layer, "l", scores, x, kernel=(1, 1))
    only_invalid_instance_error(b.build, budget=budget)
    b2 = NetworkBuilder("ok")
    b2.layer("fc", np.ones((2, 2)), b2.input("x", 2))
    graph, scores_ = b2.graph(), {"fc": np.ones((2, 2))}
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, budget=budget)
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, sparsity=sparsity)
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, budget=4, weighting=weighting)
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, budget=4, metadata=metadata)
    only_invalid_instance_error(rcprune.NetworkInstance, graph, {"fc": scores}, budget=4)
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, budget=budget, measure="macs")
    only_invalid_instance_error(rcprune.NetworkInstance, graph, scores_, budget=4, measure=weighting)


@fuzz
@given(junk, junk, junk, junk, junk, junk)
def test_measures_and_spend_tables(rows, cols, values, coef, fixed, data):
    from rcprune.network.measure import Measure, SpendTable

    only_invalid_instance_error(SpendTable, rows, cols, values)
    only_invalid_instance_error(Measure, "m", coef=coef)
    only_invalid_instance_error(Measure, "m", fixed=fixed)
    only_invalid_instance_error(Measure, rows, {"fc": values})
    only_invalid_instance_error(Measure.from_json, data)
    table = SpendTable([0, 2], [0, 2], [[0, 0], [0, 1.0]])
    only_invalid_instance_error(lambda: _network_instance().replace(measure=Measure("m", {"fc": table}, coef=coef),
                                                                    budget=fixed))


@fuzz
@given(st.sampled_from(["matrix", "network", "retention"]), junk, junk, junk, junk, junk, junk)
def test_solve_and_evaluate_options(kind, method, seed, time_limit, bound, progress, solution):
    inst = {"matrix": _matrix_instance, "network": _network_instance, "retention": _retention_instance}[kind]()
    only_invalid_instance_error(rcprune.solve, inst, method if isinstance(method, str) else None, seed=seed)
    only_invalid_instance_error(rcprune.solve, inst, time_limit=time_limit)
    only_invalid_instance_error(rcprune.solve, inst, bound=bound, time_limit=1)
    only_invalid_instance_error(rcprune.solve, inst, progress=progress)
    only_invalid_instance_error(rcprune.solve, inst, method)
    only_invalid_instance_error(rcprune.evaluate, inst, solution)
    only_invalid_instance_error(rcprune.method_names, method)


def _valid_files(tmp_path):
    inst_path = tmp_path / "inst.npz"
    rcprune.save_instance(_matrix_instance(), inst_path)
    net = _network_instance()
    net_path = tmp_path / "net.npz"
    save_network(net, net_path)
    sol_path = tmp_path / "sol.npz"
    rcprune.save_solution(rcprune.solve(_matrix_instance()).solution, sol_path)
    return {"instance": inst_path, "network": net_path, "solution": sol_path}


LOADERS = {"instance": rcprune.load_instance, "network": load_network, "solution": rcprune.load_solution,
           "network-solution": load_network_solution}


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_corrupt_truncated_and_wrong_version_files(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("files")
    files = _valid_files(folder)
    kind = data.draw(st.sampled_from(sorted(files)))
    raw = bytearray(files[kind].read_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "junk", "version", "metadata"]))
    target = folder / "bad.npz"
    if how == "truncate":
        target.write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw) - 1))]))
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
        target.write_bytes(bytes(raw))
    elif how == "junk":
        target.write_bytes(data.draw(st.binary(max_size=200)))
    else:
        with np.load(files[kind], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["metadata"]))
        if how == "version":
            meta["format"] = data.draw(junk)
            if kind == "solution":
                arrays["format"] = np.array(data.draw(st.integers(-3, 9)))
        else:
            key = data.draw(st.sampled_from(sorted(meta) or ["x"]))
            meta[key] = data.draw(junk)
        try:
            arrays["metadata"] = np.array(json.dumps(meta))
        except (TypeError, ValueError):
            arrays["metadata"] = np.array("{not json")
        np.savez(target, **arrays)
    for loader in LOADERS.values():
        only_invalid_instance_error(loader, target)
    only_invalid_instance_error(LOADERS[kind], folder / "missing.npz")


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "inst.npz"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"data")
    with pytest.raises(OSError, match="disk full"):
        rcprune.save_instance(_matrix_instance(), target)
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(
    ["solve", "bound", "instances", "--method", "--time-limit", "--seed", "--sparsity", "--budget", "--option",
     "abc", "-1", "nan", "1e400", "laplace-12x16", "chain3", "greedy-row-column", "KEY=VALUE", "workers=x"])),
    max_size=6))
def test_cli_bad_arguments_print_one_line_and_exit_2(argv):
    if not argv or argv[0] not in ("solve", "bound", "instances"):
        argv = ["solve", *argv]
    if "--time-limit" not in argv:
        argv = argv + ["--time-limit", "0.2"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2 after printing the usage
        assert exc.code in (0, 2)
        return
    assert code in (0, 2)
    if code == 2:
        text = err.getvalue()
        assert text.startswith("rcprune: error: ") and text.count("\n") == 1, text


@pytest.mark.parametrize("argv,message", [
    (["solve", "--time-limit", "-1"], "time_limit"),
    (["solve", "--seed", "-1"], "seed"),
    (["solve", "no-such-instance"], "neither an instance file nor a library instance"),
    (["solve", "--method", "no-such-method"], "unknown method"),
])
def test_cli_named_errors(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@fuzz
@given(matrices, junk, junk, junk, junk)
def test_scores_generators_library_and_solutions(weights, kind, name, a, b):
    only_invalid_instance_error(rcprune.scores, weights, kind=kind if isinstance(kind, str) else "l1")
    only_invalid_instance_error(rcprune.scores, [[1.0, -2.0]], kind=kind)
    only_invalid_instance_error(rcprune.matrix_view, weights)
    only_invalid_instance_error(rcprune.generate, kind, a, b)
    only_invalid_instance_error(rcprune.generate, "laplace", 3, 4, seed=a, sparsity=b)
    only_invalid_instance_error(rcprune.library.get, name)
    only_invalid_instance_error(rcprune.library.get_network, name)
    only_invalid_instance_error(rcprune.Solution, a, b)
    only_invalid_instance_error(rcprune.Solution.from_indices, 3, 4, a, b)
    only_invalid_instance_error(rcprune.NetworkSolution, a)
    only_invalid_instance_error(rcprune.NetworkSolution, {"fc": (a, b)})
    only_invalid_instance_error(rcprune.RetentionSolution, a)
