"""Instance and solution files: round trips, atomic writes, and rejection of corrupt or hostile files."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings

from rcprune import Instance, InvalidInstanceError, Solution, load_instance, load_solution, save_instance, save_solution

from tests.matrix.strategies import instances


@settings(max_examples=30)
@given(instances(max_m=5, max_n=5))
def test_instance_round_trip(tmp_path_factory, inst_kw):
    s, kw = inst_kw
    inst = Instance(s, **kw, name="t", metadata={"source": "test", "best_known_cost": 1.5, "seed": 3})
    path = tmp_path_factory.mktemp("io") / "x.npz"
    save_instance(inst, path)
    back = load_instance(path)
    assert back == inst
    assert np.array_equal(back.scores, inst.scores) and back.budget == inst.budget
    assert dict(back.metadata) == dict(inst.metadata)


def test_fixed_shape_round_trip(tmp_path):
    inst = Instance(np.arange(12.0).reshape(3, 4), shape=(2, 3), name="fs")
    save_instance(inst, tmp_path / "fs.npz")
    assert load_instance(tmp_path / "fs.npz").fixed_shape == (2, 3)


def test_solution_round_trip(tmp_path):
    sol = Solution([True, False, True], [False, True])
    save_solution(sol, tmp_path / "s.npz", {"method": "x", "cost": 2.0})
    back, meta = load_solution(tmp_path / "s.npz")
    assert back == sol and meta == {"method": "x", "cost": 2.0}


def test_atomic_write_leaves_no_temp_files_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    inst = Instance(np.ones((2, 2)), budget=1, name="old")
    path = tmp_path / "a.npz"
    save_instance(inst, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_instance(Instance(np.ones((2, 2)), budget=2, name="new"), path)
    monkeypatch.undo()
    assert load_instance(path).name == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def _good(tmp_path):
    path = tmp_path / "good.npz"
    save_instance(Instance(np.ones((3, 3)), budget=4), path)
    return path


def test_truncated_file(tmp_path):
    data = _good(tmp_path).read_bytes()
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInstanceError, match="corrupt instance file"):
        load_instance(bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(InvalidInstanceError, match="corrupt instance file"):
        load_instance(bad)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInstanceError, match="does not exist"):
        load_instance(tmp_path / "nope.npz")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rcprune-pwned",))


def test_pickled_payload_is_refused_and_not_executed(tmp_path):
    bad = tmp_path / "evil.npz"
    np.savez(bad, scores=np.array([Exploit()], dtype=object), metadata=np.array("{}"))
    with pytest.raises(InvalidInstanceError, match="pickled objects"):
        load_instance(bad)
    assert not os.path.exists("/tmp/rcprune-pwned")
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"scores": 1}))
    with pytest.raises(InvalidInstanceError, match="corrupt instance file"):
        load_instance(raw)


def test_wrong_keys_bad_metadata_and_bad_scores(tmp_path):
    p = tmp_path / "k.npz"
    np.savez(p, weights=np.ones((2, 2)))
    with pytest.raises(InvalidInstanceError, match="missing array\\(s\\) scores, metadata"):
        load_instance(p)
    np.savez(p, scores=np.ones((2, 2)), metadata=np.array("{not json"))
    with pytest.raises(InvalidInstanceError, match="not valid JSON"):
        load_instance(p)
    np.savez(p, scores=np.ones((2, 2)), metadata=np.array("[1, 2]"))
    with pytest.raises(InvalidInstanceError, match="JSON object"):
        load_instance(p)
    np.savez(p, scores=np.ones((2, 2)), metadata=np.array(json.dumps({"format": 1, "budget": 1})))
    with pytest.raises(InvalidInstanceError, match="metadata lacks 'name'"):
        load_instance(p)
    np.savez(p, scores=-np.ones((2, 2)), metadata=np.array(json.dumps({"format": 1, "name": "x", "budget": 1})))
    with pytest.raises(InvalidInstanceError, match="non-negative"):
        load_instance(p)
    np.savez(p, scores=np.ones((2, 2)), metadata=np.array(json.dumps({"format": 1, "name": "x", "budget": 9})))
    with pytest.raises(InvalidInstanceError, match="budget must be between"):
        load_instance(p)
    for version in (None, 2, "1", True, [1]):
        np.savez(p, scores=np.ones((2, 2)), metadata=np.array(json.dumps({"format": version, "name": "x", "budget": 1})))
        with pytest.raises(InvalidInstanceError, match="format version"):
            load_instance(p)
    np.savez(p, scores=np.ones((2, 2)), metadata=np.array(json.dumps({"format": 1, "name": "x", "fixed_shape": 5})))
    with pytest.raises(InvalidInstanceError, match="shape must be a pair"):
        load_instance(p)


def test_corrupt_solution_files(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, rows=np.array([0, 2]), cols=np.array([1]), metadata=np.array("{}"), format=np.array(1))
    with pytest.raises(InvalidInstanceError, match="invalid solution file"):
        load_solution(p)
    np.savez(p, rows=np.array([0, 1]), cols=np.array([1]), metadata=np.array("{}"))
    with pytest.raises(InvalidInstanceError, match="missing array\\(s\\) format"):
        load_solution(p)
    np.savez(p, rows=np.array([0, 1]), cols=np.array([1]), metadata=np.array("{}"), format=np.array(7))
    with pytest.raises(InvalidInstanceError, match="format version 7"):
        load_solution(p)
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("rows.npy", b"\x93NUMPY garbage")
    with pytest.raises(InvalidInstanceError):
        load_solution(p)
