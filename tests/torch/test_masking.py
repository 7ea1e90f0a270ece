"""Reversible, copyable masks: restore bit for bit, refit beside the originals, deepcopy, state_dict, training."""
import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import apply, bake, extract, finetune, is_masked, ls_refit, restore  # noqa: E402
from rcprune.torch.masking import originals_under_masks  # noqa: E402
from rcprune.torch.models import cifar_resnet  # noqa: E402
from rcprune.torch.rcmask import keep_mask, rc_mask  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402

TENSORS = ("weight", "bias")


def _masked(sparsity=0.85, model=None, x=None, y=None):
    if model is None:
        model, x, y = calibrated_resnet()
    ext = extract(model, x[:1], sparsity=sparsity)
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    return model, ext, sol, x, y


def _clone_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _masked_tensors(model):
    """(module name, tensor name) of every masked tensor."""
    return [(n, p) for n, m in model.named_modules() for p in TENSORS if rc_mask(m, p) is not None]


def _train_step(model, x, y, optimizer=None):
    model.train()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    model.eval()


def test_restore_after_refit_and_training_gives_back_every_parameter_bit_for_bit():
    model, ext, sol, x, y = _masked()
    before = _clone_state(model)
    ids = {n: id(p) for n, p in model.named_parameters()}
    types = {n: type(m) for n, m in model.named_modules()}
    apply(model, sol, ext)
    assert len(_masked_tensors(model)) > len(ext.layers)   # BatchNorm affine masked too
    rep = ls_refit(model, sol, [(x[:24],), (x[24:],)], extraction=ext)
    assert any(r["refit"] for r in rep.layers)
    finetune(model, [(x[:24], y[:24]), (x[24:], y[24:])], epochs=1, lr=0.1, progress=False)
    restore(model)
    assert not is_masked(model) and {n: type(m) for n, m in model.named_modules()} == types
    after = model.state_dict()
    assert list(after) == list(before)
    params = dict(model.named_parameters())
    assert {n: id(p) for n, p in params.items()} == ids   # the user's parameter objects, in place
    for name, p in params.items():
        assert torch.equal(p, before[name]), name
    # BatchNorm running statistics are training's, not masking's: the fine-tune step changed them
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])


def test_originals_under_masks_undo_a_refit_and_training_and_keep_the_masks():
    model, ext, sol, x, y = _masked()
    fresh = apply(copy.deepcopy(model), sol, ext)       # as apply left it
    apply(model, sol, ext)
    masks = {k: keep_mask(dict(model.named_modules())[k[0]], k[1]).clone() for k in _masked_tensors(model)}
    ids = {n: id(p) for n, p in model.named_parameters()}
    ls_refit(model, sol, [(x[:24],), (x[24:],)], extraction=ext)
    finetune(model, [(x[:24], y[:24]), (x[24:], y[24:])], epochs=1, lr=0.1, progress=False)
    changed = [k for k in masks if not torch.equal(getattr(dict(model.named_modules())[k[0]], k[1]),
                                                   getattr(dict(fresh.named_modules())[k[0]], k[1]))]
    assert changed                                       # the refit and training moved the kept values
    assert originals_under_masks(model) is model
    modules, expected = dict(model.named_modules()), dict(fresh.named_modules())
    for (name, pname), keep in masks.items():
        assert torch.equal(keep_mask(modules[name], pname), keep), (name, pname)   # the same masks
        assert torch.equal(getattr(modules[name], pname), getattr(expected[name], pname)), (name, pname)
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    other = cifar_resnet(depth=8, width=4)
    torch_prune.l1_unstructured(other.conv1, "weight", amount=0.5)
    with pytest.raises(InvalidInstanceError, match="conv1.weight carries a torch.nn.utils.prune mask"):
        originals_under_masks(other)


def test_restore_after_refit_alone_gives_back_the_whole_state_dict():
    model, ext, sol, x, _ = _masked()
    before = _clone_state(model)
    apply(model, sol, ext)
    ls_refit(model, sol, [(x,)], extraction=ext)
    apply(model, rcprune.solve(ext.instance, method="network-greedy", seed=1).solution, ext)   # re-mask
    restore(model)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], v) for k, v in before.items())


def test_ls_refit_changes_the_effective_weights_not_the_originals():
    model, ext, sol, x, _ = _masked()
    dense = {n: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
             for n, m in model.named_modules() if n in ext.layers}
    apply(model, sol, ext)
    masked = {n: model.get_submodule(n).weight.detach().clone() for n in ext.layers}
    rep = ls_refit(model, sol, [(x,)], extraction=ext)
    refitted = [r["layer"] for r in rep.layers if r["refit"]]
    assert refitted
    for n in ext.layers:
        mod = model.get_submodule(n)
        assert torch.equal(mod.parametrizations.weight.original, dense[n][0])
        if dense[n][1] is not None:
            assert torch.equal(mod.parametrizations.bias.original, dense[n][1])
        assert torch.equal(mod.weight, masked[n]) is (n not in refitted), n
        assert torch.all(mod.weight[~keep_mask(mod)] == 0)


def test_a_masked_model_deep_copies_after_a_backward_pass():
    model, ext, sol, x, y = _masked()
    apply(model, sol, ext)
    ls_refit(model, sol, [(x,)], extraction=ext)
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    model.eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))
    # the copy is independent: training it, then removing its masks, leaves the model working and masked
    out = model(x).detach()
    _train_step(twin, x, y)
    restore(twin)
    assert is_masked(model) and not is_masked(twin)
    with torch.no_grad():
        assert torch.equal(model(x), out)
    bake(model)
    with torch.no_grad():
        assert torch.equal(model(x), out)


def test_state_dict_loads_into_a_fresh_model_masked_with_another_solution():
    model, ext, sol, x, y = _masked()
    apply(model, sol, ext)
    ls_refit(model, sol, [(x,)], extraction=ext)
    _train_step(model, x, y)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    fresh = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=1).eval()
    fresh, fext, fsol, _, _ = _masked(0.5, fresh, x, y)
    apply(fresh, fsol, fext)
    with torch.no_grad():
        assert not torch.equal(fresh(x), model(x))
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    for n, p in _masked_tensors(model):
        assert torch.equal(keep_mask(fresh.get_submodule(n), p), keep_mask(model.get_submodule(n), p))
    restore(model)
    restore(fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))


def test_an_optimizer_made_before_masking_trains_it_and_pruned_entries_stay_zero():
    model, ext, sol, x, y = _masked()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    ids = {id(p) for p in model.parameters()}
    apply(model, sol, ext)
    assert {id(p) for p in model.parameters()} == ids   # the stored originals are buffers
    originals = {(n, p): model.get_submodule(n).parametrizations[p].original.clone() for n, p in _masked_tensors(model)}
    effective = {k: getattr(model.get_submodule(k[0]), k[1]).detach().clone() for k in originals}
    for _ in range(2):
        _train_step(model, x, y, optimizer)
    for (n, p), orig in originals.items():
        mod = model.get_submodule(n)
        w, keep = getattr(mod, p), keep_mask(mod, p)
        assert torch.all(w[~keep] == 0), (n, p)
        assert torch.equal(mod.parametrizations[p].original, orig)
        if effective[n, p][keep].any():   # weight decay alone moves non-zero kept entries
            assert not torch.equal(w[keep], effective[n, p][keep]), (n, p)


def test_bake_leaves_plain_parameters_holding_the_effective_weights():
    model, ext, sol, x, y = _masked()
    keys = list(model.state_dict())
    ids = {n: id(p) for n, p in model.named_parameters()}
    apply(model, sol, ext)
    ls_refit(model, sol, [(x,)], extraction=ext)
    _train_step(model, x, y)
    effective = {(n, p): getattr(model.get_submodule(n), p).detach().clone() for n, p in _masked_tensors(model)}
    with torch.no_grad():
        out = model(x)
    bake(model)
    assert not is_masked(model) and list(model.state_dict()) == keys
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    for (n, p), w in effective.items():
        param = model.get_submodule(n)._parameters[p]
        assert isinstance(param, nn.Parameter) and torch.equal(param, w), (n, p)
    with torch.no_grad():
        assert torch.equal(model(x), out)


def test_extract_scores_a_masked_model_by_its_original_weights():
    model, ext, sol, x, y = _masked()
    apply(model, sol, ext)
    ls_refit(model, sol, [(x,)], extraction=ext)
    _train_step(model, x, y)
    again = extract(model, x[:1], sparsity=0.85)
    for name in ext.instance.layer_names:
        assert np.array_equal(again.instance.scores[name], ext.instance.scores[name]), name
    apply(model, sol, again)   # the new extraction fits the masked model
    assert is_masked(model)


def test_torch_prune_masks_are_refused_by_apply_and_ls_refit_but_restored():
    model, ext, sol, x, _ = _masked()
    conv = model.get_submodule("layer1.0.conv1")
    before = conv.weight.detach().clone()
    torch_prune.l1_unstructured(conv, "weight", amount=0.5)
    with pytest.raises(InvalidInstanceError, match="'layer1.0.conv1' carries a torch.nn.utils.prune mask"):
        apply(model, sol, ext)
    with pytest.raises(InvalidInstanceError, match=r"not masked by rcprune.torch.apply"):
        ls_refit(model, sol, [(x,)], extraction=ext)
    assert is_masked(model)
    restore(model)
    assert not is_masked(model) and torch.equal(conv.weight, before)
