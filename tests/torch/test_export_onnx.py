"""``rcprune.torch.export``: every compacted form to ONNX, run by onnxruntime and matching PyTorch within
1e-4 (on the example inputs and on a fresh batch); the torch format's round trip; and the errors of bad
input (a masked model, an op ONNX cannot express, bad options), after which nothing is written."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from tests.torch.export_cases import CASES, compacted, forms, hand_built_forms  # noqa: E402

TOL = 1e-4

# the forms each case must hold: a case that lost its form would test less than it says
FORMS = {
    "resnet18-rc90-im2col": {"RCConv2d:im2col", "RCConv2d:empty", "RCConv2d:conv", "RCLinear", "MaxPool2d"},
    "resnet18-rc90-conv": {"RCConv2d:conv", "RCConv2d:empty"},
    "resnet18-channel50": {"RCConv2d:conv", "RCLinear"},
    "cifar20-rc50": {"RCConv2d:conv"},
    "cifar20-rc90": {"RCConv2d:im2col", "RCConv2d:empty"},
    "cifar20-random-train": {"ChannelScatterAdd", "BatchNorm2d"},
    "cifar20-dead": {"RCConv2d:empty"},
    "excluded": {"Conv2d", "RCConv2d:conv"},
    "coupled": {"GroupedConv", "ChannelSelect", "Sigmoid"},
}


def _onnx_outputs(path, *inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: a.numpy() for n, a in zip(names, inputs)})


def _torch_outputs(model, *inputs):
    with torch.no_grad():
        out = model(*inputs)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def _max_diff(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.shape == v.shape
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


@pytest.mark.parametrize("case", CASES)
def test_onnx_runs_every_compacted_form_and_matches_pytorch(tmp_path, case):
    small, x, masked = compacted(case)
    assert FORMS[case] <= forms(small), forms(small)
    training = small.training
    dynamic = case == "cifar20-rc90"
    report = rct.export(small, x, tmp_path / "m.onnx", dynamic_batch=dynamic)
    assert report.format == "onnx" and report.path == tmp_path / "m.onnx" and report.bytes == report.path.stat().st_size
    assert report.max_abs_diff <= TOL
    assert small.training == training   # exported in eval mode, mode given back
    small.eval()
    fresh = torch.randn((3 if dynamic else x.shape[0],) + tuple(x.shape[1:]), generator=torch.Generator().manual_seed(5))
    for inp in (x, fresh):
        assert _max_diff(_onnx_outputs(report.path, inp), _torch_outputs(small, inp)) <= TOL
    with torch.no_grad():   # and the compacted model is the masked one
        assert (small(x) - masked.eval()(x)).abs().max() <= 1e-4


def test_onnx_and_torch_export_of_hand_built_forms(tmp_path):
    """ChannelScatter and the scatter-adds on 4-d and 2-d tensors, several outputs."""
    model, x = hand_built_forms()
    assert {"ChannelScatter", "ChannelScatterAdd", "RCConv2d:im2col", "RCConv2d:empty", "RCConv2d:conv",
            "RCLinear"} <= forms(model)
    report = rct.export(model, x, tmp_path / "h.onnx", dynamic_batch=True)
    assert report.max_abs_diff <= TOL * max(1.0, max(float(np.abs(t).max()) for t in _torch_outputs(model, x)))
    y = torch.randn(5, *x.shape[1:])
    got, want = _onnx_outputs(report.path, y), _torch_outputs(model, y)
    assert _max_diff(got, want) <= TOL * max(1.0, max(float(np.abs(w).max()) for w in want))
    rct.export(model, x, tmp_path / "h.pt", format="torch")
    back = rct.load_compacted(tmp_path / "h.pt")
    assert all(torch.equal(a, b) for a, b in zip(back(y), model(y)))
    program = torch.export.export(back, (x,))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(program.module()(x), model(x)))


@pytest.mark.parametrize("case", ["resnet18-rc90-im2col", "cifar20-random-train"])
def test_torch_format_round_trips_through_load_compacted_and_torch_export(tmp_path, case):
    small, x, _ = compacted(case)
    training = small.training
    report = rct.export(small, x, tmp_path / "m.rcpt", format="torch")
    assert report.max_abs_diff == 0.0 and small.training == training
    back = rct.load_compacted(report.path)
    assert back.training == training   # modes as saved
    assert {n: type(m) for n, m in back.named_modules() if n} == {n: type(m) for n, m in small.named_modules() if n}
    assert back.state_dict().keys() == small.state_dict().keys()
    back.eval(), small.eval()
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
    program = torch.export.export(back, (x,))
    with torch.no_grad():
        assert (program.module()(x) - small(x)).abs().max() <= 1e-5


def test_a_dense_model_exports_as_it_is(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.randn(2, 3, 6, 6)
    model(x)
    model = torch.nn.Sequential(*model[:3], torch.nn.Linear(64, 2)).eval()
    assert rct.export(model, x, tmp_path / "d.onnx").max_abs_diff <= TOL
    assert rct.export(model, x, tmp_path / "d.pt", format="torch").max_abs_diff == 0.0
    with torch.no_grad():
        assert torch.equal(rct.load_compacted(tmp_path / "d.pt")(x), model(x))


def test_a_masked_model_is_refused_until_compacted_or_baked(tmp_path):
    small, x, masked = compacted("cifar20-rc90")
    for fmt in ("onnx", "torch"):
        with pytest.raises(InvalidInstanceError, match=r"masked, not compacted: call rcprune.torch.compact"):
            rct.export(masked, x, tmp_path / "m", format=fmt)
    assert not (tmp_path / "m").exists()
    rct.bake(masked)
    assert rct.export(masked, x, tmp_path / "baked.onnx").max_abs_diff <= TOL


@torch.library.custom_op("rcprune_test::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


class _CustomOp(torch.nn.Module):
    def forward(self, x):
        return _twice(x) + 1


class _DataDependent(torch.nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_an_op_onnx_cannot_express_gives_a_clear_error(tmp_path):
    x = torch.randn(2, 3)
    with pytest.raises(InvalidInstanceError, match=r"ONNX cannot express this model: .*No ONNX function found.*"
                                                   r"rcprune_test.twice"):
        rct.export(_CustomOp(), x, tmp_path / "c.onnx")
    with pytest.raises(InvalidInstanceError, match=r"cannot save node .*: it calls or holds the function "
                                                   r".*rcprune_test.twice"):
        rct.export(_CustomOp(), x, tmp_path / "c.pt", format="torch")
    with pytest.raises(InvalidInstanceError, match="torch.export cannot trace this model"):
        rct.export(_DataDependent(), x, tmp_path / "d.onnx")
    with pytest.raises(InvalidInstanceError, match="torch.fx cannot trace this model"):
        rct.export(_DataDependent(), x, tmp_path / "d.pt", format="torch")
    assert list(tmp_path.iterdir()) == []


def test_bad_options_give_clear_errors(tmp_path):
    model = torch.nn.Linear(3, 2).eval()
    x = torch.randn(2, 3)
    cases = [
        (dict(model="net"), "model must be a torch.nn.Module"),
        (dict(format="tflite"), "format must be 'onnx' or 'torch', got 'tflite'"),
        (dict(check="yes"), "check"),
        (dict(dynamic_batch=1), "dynamic_batch"),
        (dict(opset=3), "opset"),
        (dict(opset=True), "opset"),
        (dict(path=None), "path must be a file path"),
        (dict(example_inputs=[1, 2]), "example_inputs must be a tensor"),
        (dict(example_inputs=()), "example_inputs must be a tensor"),
        (dict(example_inputs=torch.randn(2, 5)), "cannot run on example_inputs"),
        (dict(example_inputs=x[:1], dynamic_batch=True), "batch .* of at least 2"),
    ]
    for change, message in cases:
        kw = dict(model=model, example_inputs=x, path=tmp_path / "m.onnx") | change
        with pytest.raises(InvalidInstanceError, match=message):
            rct.export(**kw)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_fails_the_check_is_not_written(tmp_path, monkeypatch):
    from rcprune.torch import export as export_module   # noqa: F401  (the package attribute is the function)
    import importlib
    mod = importlib.import_module("rcprune.torch.export")
    monkeypatch.setattr(mod, "_run_onnx", lambda data, args: [np.zeros((2, 2), np.float32) + 1.0])
    model = torch.nn.Linear(3, 2).eval()
    with torch.no_grad():
        model.weight.zero_(), model.bias.zero_()
    with pytest.raises(InvalidInstanceError, match="differ from the model's by 1 .*nothing was written"):
        rct.export(model, torch.randn(2, 3), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    report = rct.export(model, torch.randn(2, 3), tmp_path / "m.onnx", check=False)
    assert report.max_abs_diff is None and report.path.exists()


def test_the_package_exports_the_entry_points():
    assert {"export", "ExportReport", "save_compacted", "load_compacted"} <= set(rct.__all__)
    assert rcprune.torch.export is rct.export
