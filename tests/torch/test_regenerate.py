"""Channel regeneration: collapsed live channels come back, pruned ones stay pruned, originals stay intact."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rcprune  # noqa: E402
from rcprune import InvalidInstanceError  # noqa: E402
from rcprune import torch as rct  # noqa: E402
from rcprune.torch.rcmask import keep_mask  # noqa: E402
from rcprune.torch.regenerate import regenerate_channels  # noqa: E402
from tests.torch.cases import calibrated_resnet  # noqa: E402


def _masked_model():
    model, x, y = calibrated_resnet(batch=16, size=8)
    ext = rct.extract(model, x[:1], sparsity=0.6)
    sol = rcprune.solve(ext.instance, method="network-greedy").solution
    _masked_model.dense = {k: v.clone() for k, v in model.state_dict().items()}
    rct.apply(model, sol)
    return model, ext, x, y


def test_collapsed_live_channels_are_regenerated_and_nothing_else_changes():
    model, ext, x, y = _masked_model()
    original = _masked_model.dense
    bn_name = "layer1.0.bn1"
    bn = model.get_submodule(bn_name)
    live = keep_mask(bn, "weight").bool()
    chosen = torch.nonzero(live).flatten()[:2]
    with torch.no_grad():
        bn.parametrizations.weight[0].value[chosen] = 0.0
        bn.parametrizations.bias[0].value[chosen] = 0.3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    done = regenerate_channels(model, seed=1)
    assert done == {bn_name: 2}
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    conv = next(iter(ext.nodes[ext.batchnorms[bn_name]].support))
    conv_module = ext.layers[conv].module
    assert changed == sorted([f"{bn_name}.parametrizations.weight.0.value", f"{bn_name}.parametrizations.bias.0.value",
                              f"{conv_module}.parametrizations.weight.0.value"])
    gamma = bn.weight.detach()
    others = gamma[live].abs()
    assert torch.all(gamma[chosen] > 0) and torch.all(bn.bias.detach()[chosen] == 0)
    # the regenerated kernel rows are fresh on their kept entries and zero on the pruned ones
    conv_mod = model.get_submodule(conv_module)
    w, mask = conv_mod.weight.detach(), keep_mask(conv_mod, "weight")
    assert torch.all(w[~mask] == 0) and torch.all(w[chosen][mask[chosen]] != 0)
    untouched = [i for i in range(w.shape[0]) if i not in chosen.tolist()]
    assert torch.equal(after[f"{conv_module}.parametrizations.weight.0.value"][untouched],
                       before[f"{conv_module}.parametrizations.weight.0.value"][untouched])
    assert float(gamma[chosen][0]) == pytest.approx(float(others[~torch.isin(torch.nonzero(live).flatten(), chosen)].median()))
    # a second pass finds nothing, and restore still gives back every original weight
    assert regenerate_channels(model, seed=1) == {}
    rct.restore(model)
    restored = model.state_dict()
    assert set(restored) == set(original) and all(torch.equal(restored[k], original[k]) for k in original)


def test_pruned_channels_are_never_regenerated():
    model, ext, x, y = _masked_model()
    for bn_name in ext.batchnorms:
        bn = model.get_submodule(bn_name)
        assert not torch.any(bn.weight.detach()[~keep_mask(bn, "weight").bool()])
    assert regenerate_channels(model) == {}


def test_finetune_regenerates_and_logs_per_epoch():
    model, ext, x, y = _masked_model()
    bn = model.get_submodule("layer1.0.bn2")
    live = torch.nonzero(keep_mask(bn, "weight").bool()).flatten()
    with torch.no_grad():  # three dead channels: scale and kernel rows zero, so their gradient is zero too
        bn.parametrizations.weight[0].value[live[:3]] = 0.0
        model.get_submodule("layer1.0.conv2").parametrizations.weight[0].value[live[:3]] = 0.0
    plain = copy.deepcopy(model)
    hist = rct.finetune(model, [(x, y)], 2, lr=0.0, momentum=0.0, weight_decay=0.0, regenerate=True,
                        progress=False)
    assert [h["regenerated"] for h in hist] == [{"layer1.0.bn2": 3}, {}]
    hist_plain = rct.finetune(plain, [(x, y)], 1, lr=0.0, momentum=0.0, weight_decay=0.0, progress=False,
                              extraction=ext)
    assert "regenerated" not in hist_plain[0]
    assert torch.all(plain.get_submodule("layer1.0.bn2").weight.detach()[live[:3]] == 0)
    with pytest.raises(InvalidInstanceError, match="regenerate"):
        rct.finetune(model, [(x, y)], 1, regenerate="yes", progress=False)
    with pytest.raises(InvalidInstanceError, match="no extraction"):
        rct.finetune(copy.deepcopy(model), [(x, y)], 1, regenerate=True, progress=False)
    np.testing.assert_array_equal(keep_mask(bn, "weight").numpy(), keep_mask(plain.get_submodule("layer1.0.bn2"), "weight").numpy())
