"""Network files: round trips, and hostile or corrupt files rejected with clear errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rcprune import InvalidInstanceError, NetworkSolution, evaluate_network
from rcprune.network.generate import random_network, residual_network, resnet_network
from rcprune.network.io import load_network, load_network_solution, save_network, save_network_solution


@settings(max_examples=25)
@given(st.integers(0, 10_000))
def test_round_trip_random(tmp_path_factory, seed):
    net = random_network(seed, n_layers=4, scores="laplace", weighting=["none", "total", "mean"][seed % 3],
                         min_density=0.05 * (seed % 2))
    path = save_network(net, tmp_path_factory.mktemp("io") / "net.npz")
    back = load_network(path)
    assert back == net and back.weights.tolist() == net.weights.tolist()
    assert not back.flat_scores.flags.writeable


def test_round_trip_layer_budgets_custom_weights_and_resnet(tmp_path):
    net = residual_network(layer_budgets={"fc": 4, "stem": 2}, scores="laplace")
    net = net.replace(weighting={n: float(i + 1) for i, n in enumerate(net.layer_names)}, metadata={"k": [1]})
    assert load_network(save_network(net, tmp_path / "a.npz")) == net
    r = resnet_network(50, seed=1, width=1 / 16, num_classes=10)
    back = load_network(save_network(r, tmp_path / "r.npz"))
    assert back == r and back.group("conv1:out").consumers == r.group("conv1:out").consumers


def test_solution_round_trip(tmp_path):
    net = residual_network(budget=40, downsample=True)
    sol = NetworkSolution.from_channels(net, {"conv_b:out": [0, 2]})
    path = save_network_solution(net, sol, tmp_path / "s.npz", {"method": "x"})
    back, meta = load_network_solution(path)
    assert back == sol and meta == {"method": "x"}
    assert evaluate_network(net, back) == evaluate_network(net, sol)


def _good(tmp_path):
    return save_network(residual_network(budget=12), tmp_path / "good.npz")


def _rewrite(path, tmp_path, *, meta_fn=None, scores=None):
    with np.load(path, allow_pickle=False) as d:
        meta = json.loads(str(d["metadata"]))
        flat = d["scores"]
    if meta_fn:
        meta_fn(meta)
    bad = tmp_path / "bad.npz"
    np.savez(bad, scores=flat if scores is None else scores, metadata=np.array(json.dumps(meta)))
    return bad


def test_corrupt_files(tmp_path):
    good = _good(tmp_path)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInstanceError, match="corrupt network file"):
        load_network(trunc)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(200))
    with pytest.raises(InvalidInstanceError, match="not an .npz"):
        load_network(garbage)
    with pytest.raises(InvalidInstanceError, match="does not exist"):
        load_network(tmp_path / "nope.npz")
    with pytest.raises(InvalidInstanceError, match="scores array has 25 values but the layers. shapes need 24"):
        load_network(_rewrite(good, tmp_path, scores=np.ones(25)))
    with pytest.raises(InvalidInstanceError, match="shorter than"):
        load_network(_rewrite(good, tmp_path, scores=np.ones(5)))
    with pytest.raises(InvalidInstanceError, match="non-negative"):
        load_network(_rewrite(good, tmp_path, scores=-np.ones(24)))
    with pytest.raises(InvalidInstanceError, match="not a network instance"):
        load_network(_rewrite(good, tmp_path, meta_fn=lambda m: m.update(kind="other")))
    with pytest.raises(InvalidInstanceError, match="metadata lacks 'graph'"):
        load_network(_rewrite(good, tmp_path, meta_fn=lambda m: m.pop("graph")))
    with pytest.raises(InvalidInstanceError, match="not valid node-link data"):
        load_network(_rewrite(good, tmp_path, meta_fn=lambda m: m["graph"].pop("nodes")))
    with pytest.raises(InvalidInstanceError, match="names 'ghost', which is not a layer"):
        load_network(_rewrite(good, tmp_path, meta_fn=lambda m: m["layer_order"].append("ghost")))

    def drop_fc_edge(m):
        m["graph"]["links"] = [e for e in m["graph"]["links"] if e["target"] != "fc"]
    with pytest.raises(InvalidInstanceError, match="corrupt network file .*layer 'fc' has no input channel group"):
        load_network(_rewrite(good, tmp_path, meta_fn=drop_fc_edge))
    with pytest.raises(InvalidInstanceError, match="invalid network file .*below the protected minimum"):
        load_network(_rewrite(good, tmp_path, meta_fn=lambda m: m.update(budget=1)))


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rcprune-network-pwned",))


def test_pickle_refused(tmp_path):
    bad = tmp_path / "evil.npz"
    np.savez(bad, scores=np.array([Exploit()], dtype=object), metadata=np.array("{}"))
    with pytest.raises(InvalidInstanceError, match="pickled objects"):
        load_network(bad)
    assert not os.path.exists("/tmp/rcprune-network-pwned")


def test_corrupt_solution_file(tmp_path):
    net = residual_network(budget=12)
    path = save_network_solution(net, NetworkSolution.full(net), tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as d:
        meta = d["metadata"]
        cols = d["cols"]
    np.savez(tmp_path / "b.npz", rows=np.ones(3, bool), cols=cols, metadata=meta)
    with pytest.raises(InvalidInstanceError, match="mask lengths do not match"):
        load_network_solution(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", rows=np.ones(3, bool), cols=cols, metadata=np.array("{}"))
    with pytest.raises(InvalidInstanceError, match="not a network solution"):
        load_network_solution(tmp_path / "c.npz")


def test_is_network_file_tells_network_files_from_others(tmp_path):
    import rcprune
    from rcprune.network.generate import chain_network
    from rcprune.network.io import is_network_file, save_network

    net_path = save_network(chain_network(budget=20), tmp_path / "net.npz")
    single = rcprune.save_instance(rcprune.Instance([[1.0, 2.0]], budget=1), tmp_path / "one.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert is_network_file(net_path)
    assert not is_network_file(single) and not is_network_file(junk) and not is_network_file(tmp_path / "none.npz")


def _change_metadata(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["metadata"]))
    change(meta)
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.mark.parametrize("version", [None, 0, 3, "1", True])
def test_wrong_format_versions_are_refused(tmp_path, version):
    net = residual_network(0, budget=12)
    p, q = tmp_path / "n.npz", tmp_path / "s.npz"
    save_network(net, p)
    save_network_solution(net, NetworkSolution.full(net), q)
    for path, load in ((p, load_network), (q, load_network_solution)):
        _change_metadata(path, lambda meta: meta.__setitem__("format", version))
        with pytest.raises(InvalidInstanceError, match="format version"):
            load(path)


@pytest.mark.parametrize("size", ["2", 2.0, True, 0, -1, None])
def test_a_group_size_that_is_not_a_positive_integer_is_named(tmp_path, size):
    net = residual_network(0, budget=12)
    p = tmp_path / "n.npz"
    save_network(net, p)

    def change(meta):
        group = next(n for n in meta["graph"]["nodes"] if n.get("kind") == "group")
        group["size"] = size

    _change_metadata(p, change)
    with pytest.raises(InvalidInstanceError, match="has size"):
        load_network(p)
