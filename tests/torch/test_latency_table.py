"""The measured latency table: its grid and tables, the measure it makes for the solvers, its predictions,
its cache and its input checks. Structure only: no assertion depends on how fast anything ran."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rcprune  # noqa: E402
from rcprune.network.model import NetworkSolution  # noqa: E402
from rcprune.torch import latency_grid  # noqa: E402
from rcprune.torch.extract import extract  # noqa: E402
from rcprune.torch.latency_table import LatencyTable, latency_table  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from rcprune.validation import InvalidInstanceError  # noqa: E402

FAST = dict(rows=3, cols=4, repeats=1, warmup=0)


def _model(width=4):
    return cifar_resnet(depth=8, width=width, in_channels=1, num_classes=3, seed=0).eval()


@pytest.fixture(scope="module")
def built():
    model, x = _model(), torch.randn(2, 1, 8, 8)
    ext = extract(model, x[:1])
    return model, x, ext, latency_table(model, x, extraction=ext, cache=False, **FAST)


def _no_timing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("timed although the table was cached")
    monkeypatch.setattr(latency_grid, "time_calls", refuse)


def test_every_layer_has_its_forms_at_its_full_shape(built):
    _, _, ext, table = built
    assert set(table.layers) == set(ext.instance.layer_names)
    for li in ext.instance.layers:
        lt = table.layers[li.name]
        assert (lt.rows, lt.cols, lt.block) == (li.rows, li.cols, li.block)
        expected = {"linear"} if ext.layers[li.name].kind == "linear" else {"conv"} | ({"im2col"} if li.block > 1 else set())
        # a block's last conv heads its residual add (out += shortcut): timed with it too
        expected |= {"conv-add"} if li.name.endswith(".conv2") else set()
        assert set(lt.forms) == expected
        for form, ft in lt.forms.items():
            assert ft.rows[0] == 0 and ft.rows[-1] == li.rows
            assert ft.cols[0] == 0 and ft.cols[-1] == (lt.in_channels if form.startswith("conv") else li.cols)
            assert not ft.ms[0].any() and not ft.ms[:, 0].any()
            assert (ft.ms[1:, 1:] > 0).all()


def test_measure_tables_are_monotone_zero_on_the_axes_and_cover_each_layer(built):
    _, _, ext, table = built
    for granularity in ("column", "channel"):
        m = table.measure(ext, granularity)
        assert (m.name, m.unit, m.fixed) == ("latency", "ms", table.fixed)
        for li in ext.instance.layers:
            t = m.tables[li.name]
            assert (t.rows[-1], t.cols[-1]) == (li.rows, li.cols)
            assert not t.values[0].any() and not t.values[:, 0].any()
            assert (np.diff(t.values, axis=0) >= 0).all() and (np.diff(t.values, axis=1) >= 0).all()


def test_channel_tables_have_column_knots_at_whole_channels(built):
    _, _, ext, table = built
    m = table.measure(ext, "channel")
    for li in ext.instance.layers:
        t = m.tables[li.name]
        assert (t.cols % li.block == 0).all()
        if ext.layers[li.name].kind == "conv":
            conv = table.layers[li.name].forms["conv"].table()
            np.testing.assert_allclose(t.values, conv(t.rows[:, None], t.cols[None, :] // li.block))
    with pytest.raises(InvalidInstanceError, match="granularity"):
        table.measure(ext, "row")


def test_column_table_is_the_faster_partial_form_but_never_below_whole_channels(built):
    _, _, ext, table = built
    name = "layer1.0.conv2"
    lt, t = table.layers[name], table.spend_table(name)
    r, c = int(t.rows[-1]), int(t.cols[len(t.cols) // 2])
    ms = table.form_times(name, r, c)
    assert set(ms) == {"conv", "im2col"}
    whole = table.form_times(name, r, c, touched=c / lt.block)["conv"]
    assert float(t(r, c)) >= whole - 1e-12
    assert float(t(r, c)) <= max(min(ms.values()), whole) + 1e-12


def test_measure_drives_the_network_solver_within_the_latency_budget(built):
    _, _, ext, table = built
    inst = ext.instance.replace(measure=table.measure(ext), density=0.5)
    sol = rcprune.solve(inst, method="network-greedy").solution
    ev = inst.evaluate(sol)
    assert ev.feasible and ev.measure == "latency"
    assert ev.spend <= inst.budget * (1 + 1e-9)
    assert ev.spend < inst.full_spend.sum()


def test_predict_is_fixed_plus_the_layers_in_their_compact_forms(built):
    _, _, ext, table = built
    full = NetworkSolution.full(ext.instance)
    dense_layers = table.metadata["dense_layers_ms"]
    # fixed is the dense time minus the layers' (floored at 0): the full prediction is the dense time unless
    # the layers alone were timed slower than the whole model
    assert table.predict(ext, full) == pytest.approx(max(table.dense_ms, dense_layers))
    assert table.predict(ext, full) == pytest.approx(table.fixed + sum(
        table.form_times(n, lt.rows, lt.cols, lt.in_channels)["linear" if lt.kind == "linear" else "conv"]
        for n, lt in table.layers.items()))
    inst = ext.instance.replace(measure=table.measure(ext), density=0.4)
    sol = rcprune.solve(inst, method="network-greedy").solution
    assert table.fixed <= table.predict(inst, sol) <= table.predict(ext, full) + 1e-9


def test_the_group_space_prices_residual_adds_with_the_convs_that_head_them(built):
    _, _, ext, table = built
    group, column = table.measure(ext, "group"), table.measure(ext, "column")
    assert (group.fixed, column.fixed) == (table.fixed_group, table.fixed)
    owners = [n for n, lt in table.layers.items() if "conv-add" in lt.forms]
    assert owners == ["layer1.0.conv2", "layer2.0.conv2", "layer3.0.conv2"]
    for name in owners:
        li, t = ext.instance.layer(name), group.tables[name]
        add = table.layers[name].forms["conv-add"].table()
        np.testing.assert_allclose(t.values, add(t.rows[:, None], t.cols[None, :] // li.block))
    group_sum = sum(group.spend(li.name, li.rows, li.cols) for li in ext.instance.layers)
    assert table.metadata["dense_layers_group_ms"] == pytest.approx(group_sum)
    assert table.fixed_group == pytest.approx(max(table.dense_ms - group_sum, 0.0))


def test_residual_adds_are_owned_by_their_first_term():
    class Block(torch.nn.Module):
        def __init__(self, first):
            super().__init__()
            self.a, self.bn = torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.BatchNorm2d(2)
            self.b, self.c = torch.nn.Conv2d(2, 2, 1), torch.nn.Conv2d(2, 2, 1)
            self.first = first

        def forward(self, x):
            a, b = self.bn(self.a(x)), self.b(x)
            y = a + b if self.first == "a" else b + a
            return self.c(torch.relu(y))

    x = torch.randn(2, 2, 5, 5)
    for first, other in (("a", "b"), ("b", "a")):
        model = Block(first).eval()
        ext = extract(model, x[:1])
        probes = {p.name: p for p in latency_grid.probe_layers(model, ext, (x,), True)}
        assert isinstance(probes[first].residual[0], torch.nn.ReLU) and probes[first].output_shape == (2, 2, 5, 5)
        assert probes[other].residual is None and probes["c"].residual is None
        form, (inp,) = latency_grid._form(probes[first], "conv-add", 2, 2, "cpu", torch.float32)
        with torch.no_grad():
            want = torch.relu(form.layer(inp) + form.other)
            torch.testing.assert_close(form(inp), want)
    probes = latency_grid.probe_layers(model, ext, (x,), False)    # no epilogue: nothing timed with a layer
    assert all(p.residual is None for p in probes)


def test_layer_ms_picks_the_form_compact_runs(built):
    _, _, _, table = built
    name = "layer1.0.conv1"
    lt = table.layers[name]
    whole = np.zeros((lt.in_channels, lt.block), bool)
    whole[:2] = True
    assert table.layer_ms(name, 3, whole) == table.form_times(name, 3, 2 * lt.block, 2)["conv"]
    partial = np.zeros_like(whole)
    partial[:3, :2] = True
    assert table.layer_ms(name, 3, partial) == min(table.form_times(name, 3, 6, 3).values())
    assert table.layer_ms(name, 0, whole) == 0.0 and table.layer_ms(name, 3, np.zeros_like(whole)) == 0.0


def test_a_table_refuses_another_models_layers(built):
    _, x, ext, table = built
    wider = extract(_model(width=8), x[:1])
    with pytest.raises(InvalidInstanceError, match="layer 'conv1' is 4 x 9"):
        table.measure(wider)
    deeper = extract(cifar_resnet(depth=14, width=4, in_channels=1, num_classes=3), x[:1])
    with pytest.raises(InvalidInstanceError, match="not in the table"):
        table.predict(deeper, NetworkSolution.full(deeper.instance))
    with pytest.raises(InvalidInstanceError, match="no layer"):
        table.form_times("nope", 1, 1)


def test_epilogue_is_the_batchnorm_and_activation_on_the_layer_output_alone(built):
    model, x, ext, _ = built
    probes = {p.name: p for p in latency_grid.probe_layers(model, ext, (x,), epilogue=True)}
    kinds = {n: [type(m).__name__ for m in p.epilogue] for n, p in probes.items()}
    assert kinds["conv1"] == ["BatchNorm2d", "ReLU"]
    assert kinds["layer1.0.conv2"] == ["BatchNorm2d"]      # then the residual add, shared with the shortcut
    assert kinds["fc"] == []
    assert probes["layer1.0.conv1"].input_shape == (2, 4, 8, 8)
    assert all(not p.epilogue for p in latency_grid.probe_layers(model, ext, (x,), epilogue=False))


def test_timed_forms_run_the_folded_batchnorm_as_a_bias_and_the_activation_on_the_kept_rows(built):
    model, x, ext, _ = built
    probes = {p.name: p for p in latency_grid.probe_layers(model, ext, (x,), epilogue=True)}
    for form in ("conv", "im2col"):
        module, (inp,) = latency_grid.layer_calls(probes["conv1"], form, 3, [2], "cpu", torch.float32)[(form, 3, 2)]
        kinds = [type(m).__name__ for m in module.modules()]
        assert "BatchNorm2d" not in kinds and kinds[-1] == "ReLU"   # compact folds it, so it is not timed
        assert module[0].bias is not None and module[0].bias.shape == (3,)
        assert module(inp).shape[1] == 3
    plain, _ = latency_grid.layer_calls(probes["fc"], "linear", 2, [3], "cpu", torch.float32)[("linear", 2, 3)]
    assert not any(isinstance(m, torch.nn.ReLU) for m in plain.modules())


def test_a_batchnorm_compact_does_not_fold_is_timed():
    # after a linear layer, and without running statistics, compact keeps the BatchNorm: the table times it
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.BatchNorm2d(4, track_running_stats=False),
                                torch.nn.Flatten(), torch.nn.Linear(16, 5), torch.nn.BatchNorm1d(5),
                                torch.nn.ReLU(), torch.nn.Linear(5, 2)).eval()
    x = torch.randn(3, 1, 4, 4)
    ext = extract(model, x[:1])
    probes = {p.name: p for p in latency_grid.probe_layers(model, ext, (x,), epilogue=True)}
    for name, form, shape in (("0", "conv", (1, 2)), ("3", "linear", (3, 7))):
        r, c = shape
        module, _ = latency_grid.layer_calls(probes[name], form, r, [c], "cpu", torch.float32)[(form, r, c)]
        bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert len(bns) == 1 and bns[0].num_features == r, name
        assert module[0].bias is None if name == "0" else module[0].bias is not None


def test_each_timed_run_follows_an_untimed_run_of_the_same_call():
    order = []

    class Spy(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            order.append(self.name)
            return x

    calls = {k: (Spy(k), (torch.zeros(1),)) for k in "ab"}
    got = latency_grid.time_calls(calls, repeats=2, warmup=1, device=torch.device("cpu"))
    assert set(got) == {"a", "b"} and all(v >= 0 for v in got.values())
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 2   # warmups, then warm + timed per call and round


def test_cache_is_reused_and_a_stale_or_corrupt_file_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    model, x = _model(), torch.randn(2, 1, 8, 8)
    first = latency_table(model, x, cache_dir=tmp_path, **FAST)
    (path,) = tmp_path.glob("*.npz")
    with monkeypatch.context() as mp:
        _no_timing(mp)
        assert latency_table(model, x, cache_dir=tmp_path, **FAST).to_json() == first.to_json()
    data = dict(np.load(path))
    data["key"] = np.array(str(data["key"]).replace('"repeats": 1', '"repeats": 7'))
    np.savez(path, **data)
    with pytest.warns(UserWarning, match="stale"):
        latency_table(model, x, cache_dir=tmp_path, **FAST)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(UserWarning, match="corrupt"):
        latency_table(model, x, cache_dir=tmp_path, **FAST)
    with monkeypatch.context() as mp:       # the rebuilt file is good again
        _no_timing(mp)
        latency_table(model, x, cache_dir=tmp_path, **FAST)
    monkeypatch.setenv("RCPRUNE_CACHE", str(tmp_path / "env"))
    latency_table(model, x, **(FAST | {"repeats": 2}))
    assert len(list((tmp_path / "env").glob("*.npz"))) == 1
    latency_table(model, x, cache=False, **(FAST | {"repeats": 3}))
    assert len(list((tmp_path / "env").glob("*.npz"))) == 1


def test_bad_inputs_are_refused_with_a_reason(built):
    model, x, ext, _ = built
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInstanceError, match="CUDA is not available"):
            latency_table(model, x, extraction=ext, device="cuda", cache=False, **FAST)
    for device in ("warp-drive", "meta"):
        with pytest.raises(InvalidInstanceError, match="device"):
            latency_table(model, x, extraction=ext, device=device, cache=False, **FAST)
    with pytest.raises(InvalidInstanceError, match="example_inputs"):
        latency_table(model, [[1.0]], extraction=ext, cache=False, **FAST)
    with pytest.raises(InvalidInstanceError, match="cannot run"):
        latency_table(model, torch.randn(2, 3, 8, 8), extraction=ext, cache=False, **FAST)
    with pytest.raises(InvalidInstanceError, match="dtype"):
        latency_table(model, x, extraction=ext, dtype=torch.int32, cache=False, **FAST)
    with pytest.raises(InvalidInstanceError, match="rows"):
        latency_table(model, x, extraction=ext, cache=False, **(FAST | {"rows": 1}))
    for key in ("repeats", "warmup"):     # a huge count would time for days
        with pytest.raises(InvalidInstanceError, match=f"{key} must be at most 10000"):
            latency_table(model, x, extraction=ext, cache=False, **(FAST | {key: 10**12}))
    with pytest.raises(InvalidInstanceError, match="Module"):
        latency_table("model", x, cache=False)
    with pytest.raises(InvalidInstanceError, match="weight shape"):
        latency_table(_model(width=8), x, extraction=ext, cache=False, **FAST)


def test_from_json_round_trips_and_refuses_malformed_data(built):
    _, _, ext, table = built
    again = LatencyTable.from_json(table.to_json())
    assert again.measure(ext) == table.measure(ext) and again.measure(ext, "group") == table.measure(ext, "group")
    assert again.fixed_group == table.fixed_group
    with pytest.raises(InvalidInstanceError, match="malformed"):
        LatencyTable.from_json({"layers": {"a": {"kind": "conv"}}})
    with pytest.raises(AttributeError):
        table.fixed = 1.0


@pytest.mark.parametrize("progress", [False, True])
def test_progress_bar_names_the_layer_and_is_silent_when_off(progress, capfd):
    model, x = _model(), torch.randn(2, 1, 8, 8)
    latency_table(model, x, cache=False, progress=progress, rows=2, cols=2, repeats=1, warmup=0)
    err = capfd.readouterr().err
    if progress:
        assert "latency table" in err and "layer=" in err and "device=cpu" in err
    else:
        assert err == ""
