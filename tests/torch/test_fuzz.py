"""Bad input at the torch entry points: only ``InvalidInstanceError`` escapes, and a refused call leaves the
model as it was (every tensor bit for bit)."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rcprune  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402

MODEL, X, Y = calibrated_resnet(batch=8, size=8)
EXT = rct.extract(copy.deepcopy(MODEL), X[:1], sparsity=0.5)
SOLUTION = rcprune.solve(EXT.instance).solution

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.lists(st.integers(-2, 2), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before) -> bool:
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def only_invalid(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except rcprune.InvalidInstanceError:
        return None


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["sparsity", "density", "budget", "weighting", "scores", "protect", "unsupported",
                        "min_density", "name"]), junk)
def test_extract_and_prune_options(key, value):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    kw = {"sparsity": 0.5} if key not in ("sparsity", "density", "budget") else {}
    only_invalid(rct.extract, model, X[:1], **kw, **{key: value})
    if key in ("sparsity", "weighting", "scores", "protect"):
        only_invalid(rct.prune, model, X[:1], **{key: value, "compact": False})
    assert _unchanged(model, before)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["method", "seed", "time_limit", "bound", "solver_options", "refit", "finetune", "partial"]),
       junk)
def test_prune_options(key, value):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    only_invalid(rct.prune, model, X[:1], sparsity=0.5, **{key: value})
    assert _unchanged(model, before)  # prune works on a copy


@settings(max_examples=30, deadline=None)
@given(junk, junk)
def test_masking_refit_and_compact_with_junk(solution, other):
    model = copy.deepcopy(MODEL)
    rct.extract(model, X[:1], sparsity=0.5)
    before = _state(model)
    only_invalid(rct.apply, model, solution)
    assert _unchanged(model, before)
    rct.apply(model, SOLUTION)
    masked = _state(model)
    only_invalid(rct.ls_refit, model, SOLUTION, [X], ridge=other)
    only_invalid(rct.ls_refit, model, solution, [X])
    only_invalid(rct.compact, model, solution)
    only_invalid(rct.compact, model, SOLUTION, partial=other)
    if other is not None and not isinstance(other, (int, float)):
        assert _unchanged(model, masked)
    rct.restore(model)
    assert _unchanged(model, before)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["sparsity", "method", "damping", "scope", "layers", "seed", "time_limit", "max_batches"]), junk)
def test_retention_prune_options(key, value):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    kw = {"sparsity": 0.5, "method": "magnitude"}
    kw[key] = value
    sparsity = kw.pop("sparsity")
    if only_invalid(rct.retention_prune, model, [X], sparsity, **kw) is None:
        assert _unchanged(model, before)  # refused before anything was masked


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": -1}, "epochs"), ({"epochs": "2"}, "epochs"), ({"epochs": 1, "lr": -1.0}, "lr"),
    ({"epochs": 1, "schedule": "zigzag"}, "schedule"),
])
def test_finetune_refuses_bad_options(kwargs, message):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    loader = [(X, Y)]
    with pytest.raises(rcprune.InvalidInstanceError, match=message):
        rct.finetune(model, loader, progress=False, **kwargs)
    assert _unchanged(model, before)


TABLE = rct.latency_table(copy.deepcopy(MODEL), X, repeats=1, warmup=1, rows=3, cols=3, cache=False)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["budget", "speedup", "latency_ms", "granularity", "latency_table", "device", "min_channels",
                        "calibrate"]), junk)
def test_budget_options(key, value):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    kw = {"budget": "latency", "latency_table": TABLE, "speedup": 1.2, "compact": False}
    if key in ("latency_ms", "speedup"):
        kw.pop("speedup")
    kw[key] = value
    only_invalid(rct.prune, model, X[:1], **kw)
    assert _unchanged(model, before)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(["device", "dtype", "rows", "cols", "repeats", "warmup", "extraction", "cache_dir"]), junk)
def test_latency_table_options(key, value):
    model = copy.deepcopy(MODEL)
    before = _state(model)
    only_invalid(rct.latency_table, model, X[:2], **{"repeats": 1, "warmup": 0, "rows": 2, "cols": 2,
                                                    "cache": False, key: value})
    only_invalid(TABLE.measure, EXT, granularity=value)
    only_invalid(TABLE.predict, EXT, value)
    assert _unchanged(model, before)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["format", "check", "dynamic_batch", "opset", "path", "example_inputs", "map_location"]), junk)
def test_export_and_load_options(key, value):
    import tempfile
    from pathlib import Path

    model = copy.deepcopy(MODEL)
    before = _state(model)
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"model": model, "example_inputs": X[:2], "path": Path(tmp) / "m", "format": "torch"}
        if key == "map_location":
            rct.export(**kw)
            only_invalid(rct.load_compacted, kw["path"], map_location=value)
        else:
            kw[key] = Path(tmp) / value if key == "path" and isinstance(value, str) else value
            only_invalid(rct.export, **kw)
        only_invalid(rct.load_compacted, Path(tmp) / value if isinstance(value, str) else value)
    assert _unchanged(model, before) and not model.training
