"""``save_compacted`` / ``load_compacted``: a compacted model through a pickle-free file and back, bit for
bit; what cannot be saved is refused at saving; a truncated, foreign, tampered or newer file gives a clear
error, never code run from the file."""
import io
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from rcprune.torch import saved_model  # noqa: E402
from tests.torch.export_cases import compacted, forms, hand_built_forms  # noqa: E402


@pytest.fixture(scope="module")
def cifar():
    small, x, _ = compacted("cifar20-rc90")
    return small, x


def _same(a, b, x):
    with torch.no_grad():
        ya, yb = a(x), b(x)
    ya, yb = (ya, yb) if isinstance(ya, tuple) else ((ya,), (yb,))
    return all(torch.equal(u, v) for u, v in zip(ya, yb))


@pytest.mark.parametrize("case", ["cifar20-rc90", "cifar20-random-train", "resnet18-channel50", "excluded", "coupled",
                                  "hand"])
def test_a_saved_model_loads_back_bit_for_bit(tmp_path, case):
    small, x = hand_built_forms() if case == "hand" else compacted(case)[:2]
    path = rct.save_compacted(small, tmp_path / "m.rcpt")
    torch.load(path, weights_only=True)   # a plain weights-only file
    back = rct.load_compacted(path)
    assert isinstance(back, torch.fx.GraphModule) and forms(back) == forms(small)
    assert back.training == small.training
    modes = {n: m.training for n, m in small.named_modules()}
    assert {n: m.training for n, m in back.named_modules()} == modes
    sd, sd_back = small.state_dict(), back.state_dict()
    assert sd.keys() == sd_back.keys() and all(torch.equal(sd[k], sd_back[k]) for k in sd)
    assert all(sd[k].stride() == sd_back[k].stride() for k in sd)   # channels-last weights stay channels-last
    small.eval(), back.eval()
    assert _same(small, back, x)
    # and again: a loaded model saves and loads like the original
    assert _same(small, rct.load_compacted(rct.save_compacted(back, tmp_path / "again.rcpt")), x)


def test_a_loaded_model_trains(tmp_path, cifar):
    small, x = cifar
    back = rct.load_compacted(rct.save_compacted(small, tmp_path / "m.rcpt"))
    assert all(p.requires_grad for p in back.parameters())
    grads = []
    for model in (small, back):   # the same gradients as the saved model's
        model.train()
        model.zero_grad()
        model(x).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
        model.eval()
    assert grads[0].keys() == grads[1].keys() and any(g is not None for g in grads[1].values())
    assert all((g is None and grads[1][n] is None) or torch.equal(g, grads[1][n]) for n, g in grads[0].items())


def test_what_the_file_cannot_describe_is_refused_when_saving(tmp_path, cifar):
    small, x = cifar
    _, _, masked = compacted("cifar20-rc90")
    with pytest.raises(InvalidInstanceError, match="takes the torch.fx.GraphModule"):
        rct.save_compacted(masked, tmp_path / "m")
    with pytest.raises(InvalidInstanceError, match="masked, not compacted"):
        rct.save_compacted(torch.fx.symbolic_trace(masked), tmp_path / "m")

    class Custom(torch.nn.Module):
        def forward(self, x):
            return x + 1

    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
    gm.add_submodule("0", Custom())
    with pytest.raises(InvalidInstanceError, match=r"module '0': its class .*Custom, which is neither a torch.nn"):
        rct.save_compacted(gm, tmp_path / "m")
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
    gm.get_submodule("0").register_forward_hook(lambda *a: None)
    with pytest.raises(InvalidInstanceError, match="module '0'.* has hooks"):
        rct.save_compacted(gm, tmp_path / "m")
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
    gm.get_submodule("0").callback = print
    with pytest.raises(InvalidInstanceError, match="attribute 'callback' is a value of type builtin_function"):
        rct.save_compacted(gm, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def _payload(small):
    return saved_model.compacted_payload(small)


def _write(tmp_path, payload, name="t.rcpt"):
    buf = io.BytesIO()
    torch.save(payload, buf)
    (tmp_path / name).write_bytes(buf.getvalue())
    return tmp_path / name


def test_bad_files_give_clear_errors(tmp_path, cifar):
    small, x = cifar
    good = rct.save_compacted(small, tmp_path / "good.rcpt").read_bytes()
    with pytest.raises(InvalidInstanceError, match="does not exist"):
        rct.load_compacted(tmp_path / "missing.rcpt")
    with pytest.raises(InvalidInstanceError, match="path must be a file path, got None"):
        rct.load_compacted(None)
    with pytest.raises(InvalidInstanceError, match="is a folder, not a file"):
        rct.save_compacted(small, tmp_path)
    with pytest.raises(InvalidInstanceError, match="map_location must be a device"):
        rct.load_compacted(tmp_path / "good.rcpt", map_location="nowhere")
    assert rct.load_compacted(tmp_path / "good.rcpt", map_location=torch.device("cpu")) is not None
    (tmp_path / "trunc.rcpt").write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidInstanceError, match=r"corrupt compacted model file .*trunc.rcpt.*weights_only=True"):
        rct.load_compacted(tmp_path / "trunc.rcpt")
    (tmp_path / "junk.rcpt").write_bytes(b"not a model at all")
    with pytest.raises(InvalidInstanceError, match="corrupt compacted model file"):
        rct.load_compacted(tmp_path / "junk.rcpt")
    buf = io.BytesIO()
    torch.save(small, buf)   # a pickled module: weights_only refuses it
    (tmp_path / "pickled.rcpt").write_bytes(buf.getvalue())
    with pytest.raises(InvalidInstanceError, match="corrupt compacted model file"):
        rct.load_compacted(tmp_path / "pickled.rcpt")
    with pytest.raises(InvalidInstanceError, match="is not an rcprune compacted model file"):
        rct.load_compacted(_write(tmp_path, small.state_dict()))
    newer = _payload(small) | {"version": saved_model.VERSION + 1}
    with pytest.raises(InvalidInstanceError, match=f"format version {saved_model.VERSION + 1}, newer than"):
        rct.load_compacted(_write(tmp_path, newer))
    with pytest.raises(InvalidInstanceError, match="bad format version"):
        rct.load_compacted(_write(tmp_path, _payload(small) | {"version": "1"}))
    with pytest.raises(InvalidInstanceError, match="meta is not valid JSON"):
        rct.load_compacted(_write(tmp_path, _payload(small) | {"meta": "{"}))
    payload = _payload(small)
    key = next(iter(payload["tensors"]))
    del payload["tensors"][key]
    with pytest.raises(InvalidInstanceError, match=f"tensor '{key}' is missing"):
        rct.load_compacted(_write(tmp_path, payload))
    payload = _payload(small)
    payload["tensors"]["nowhere.weight"] = torch.zeros(1)
    with pytest.raises(InvalidInstanceError, match="tensor.* that no module holds: nowhere.weight"):
        rct.load_compacted(_write(tmp_path, payload))
    payload = _payload(small)
    w = next(k for k in payload["tensors"] if k.endswith("weight") and payload["tensors"][k].dim() == 4)
    payload["tensors"][w] = payload["tensors"][w][:, :1]   # a wrong shape shows when the model runs
    back = rct.load_compacted(_write(tmp_path, payload))
    with pytest.raises(RuntimeError):
        back(x)


def _tampered(small, edit):
    payload = _payload(small)
    meta = json.loads(payload["meta"])
    edit(meta)
    return payload | {"meta": json.dumps(meta)}


def test_a_tampered_file_runs_no_code_of_its_own(tmp_path, cifar):
    small, _ = cifar
    call = next(i for i, n in enumerate(json.loads(_payload(small)["meta"])["graph"]) if n["op"] == "call_function")
    mod = next(i for i, m in enumerate(json.loads(_payload(small)["meta"])["modules"]) if "class" in m)
    fc = next(m["path"] for m in json.loads(_payload(small)["meta"])["modules"] if m.get("class", "").endswith("RCLinear"))

    def function(name):
        return lambda meta: meta["graph"][call].__setitem__("target", {"function": name})

    def cls(name):
        return lambda meta: meta["modules"][mod].__setitem__("class", name)

    def method(name):
        return lambda meta: meta["graph"][call].update(op="call_method", target=name)

    for edit, message in [
        (function("os.system"), "calls 'os.system', which is not an allowed function"),
        (function("builtins.eval"), "calls 'builtins.eval', which is not an allowed function"),
        (function("torch.load"), "calls 'torch.load', which is not an allowed function"),
        (function("torch._C._set_grad_enabled"), "not an allowed function"),
        (cls("subprocess:Popen"), "module class 'subprocess:Popen' is not allowed"),
        (cls("torch.nn.modules.module:Module.__class__"), "is not allowed"),
        (cls("rcprune.torch.saved_model:InvalidInstanceError"), "is not allowed"),
        (function("operator.attrgetter"), "calls 'operator.attrgetter', which is not an allowed function"),
        (function("operator.call"), "not an allowed function"),
        (method("__reduce_ex__"), "is not a public Tensor method"),
        (lambda meta: meta["graph"][call].update(op="get_attr", target=f"{fc}.__class__"),
         f"get_attr target '{fc}.__class__' is not allowed"),
        (lambda meta: meta["graph"][call].update(op="get_attr", target=f"{fc}.extra_repr"),
         "names no module, parameter or buffer"),
        (lambda meta: meta["graph"][call].update(op="call_module", target="nowhere"),
         "names no module, parameter or buffer"),
        (lambda meta: meta["modules"][mod]["attrs"].__setitem__("__class__", 1), "attribute name '__class__'"),
        (lambda meta: meta["modules"][mod]["attrs"].__setitem__("x", {"pickle": "..."}), "unreadable value"),
        (lambda meta: meta["graph"][call].__setitem__("args", {"tuple": [{"node": "later"}]}),
         "reads 'later' before it is defined"),
    ]:
        with pytest.raises(InvalidInstanceError, match=message):
            rct.load_compacted(_write(tmp_path, _tampered(small, edit)))


def test_a_failed_save_leaves_no_file_and_an_old_file_as_it_was(tmp_path, cifar, monkeypatch):
    small, x = cifar
    path = rct.save_compacted(small, tmp_path / "m.rcpt")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "atomic_write_bytes", lambda p, data: crash())
    with pytest.raises(OSError):
        rct.save_compacted(small, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.rcpt"]
