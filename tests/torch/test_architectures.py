"""torchvision models with grouped and depthwise convs, squeeze-excitation and channel concatenations (issue #19),
pruned end to end:
``prune(model, x, sparsity=0.5, method="network-greedy")`` traces, solves and compacts, and the compacted
model computes what the masked one does (relative 1e-5); the network lower bound gives a certified gap
(ResNeXt's takes ~12 s and is left out). Width-reduced variants (grouped convs in the ResNeXt and RegNetY
ones, depthwise convs and squeeze-excitation in the others) and 32x32 inputs keep each test to a few
seconds; the full-size models run in ``rcprune bench architectures``. ShuffleNet splits and shuffles
channels (opaque, ``rcprune.torch.extract_shuffle``). SqueezeNet, GoogLeNet (eval mode, no
auxiliary heads) and DenseNet (a small one and densenet121, BatchNorm on concatenations of concatenations)
concatenate channels; GoogLeNet's BatchNorm statistics are re-estimated on random inputs first, since with
its ``init_weights`` the signal vanishes before the classifier and every input would give the same output."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from rcprune.torch import apply, prune  # noqa: E402
from rcprune.torch.batchnorm import reestimate_batchnorm  # noqa: E402


def _efficientnet_small():
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.5, depth_mult=0.5)
    return EfficientNet(setting, 0.2, num_classes=10, last_channel=last)


def _googlenet():
    model = torchvision.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)
    reestimate_batchnorm(model, [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))])
    return model


def _model(name: str):
    from torchvision.models.densenet import DenseNet
    from torchvision.models.regnet import BlockParams, RegNet
    from torchvision.models.resnet import Bottleneck, ResNet

    tv = torchvision.models
    builders = {   # the torchvision architectures at a reduced width or depth
        "resnext-small": lambda: ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=10),
        "mobilenet_v2": lambda: tv.mobilenet_v2(num_classes=10, width_mult=0.5),
        "mobilenet_v3_small": lambda: tv.mobilenet_v3_small(num_classes=10, width_mult=0.5),
        "efficientnet-small": _efficientnet_small,
        "regnet-y-small": lambda: RegNet(BlockParams.from_init_params(depth=6, w_0=16, w_a=8.0, w_m=2.0, group_width=8,
                                                                      se_ratio=0.25), num_classes=10),
        "squeezenet1_0": lambda: tv.squeezenet1_0(num_classes=10),
        "googlenet": _googlenet,
        "densenet-small": lambda: DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=16, num_classes=10),
        "densenet121": lambda: tv.densenet121(num_classes=10),
        "shufflenet_v2_x0_5": lambda: tv.shufflenet_v2_x0_5(num_classes=10),
    }
    torch.manual_seed(0)
    return builders[name]().eval()


@pytest.mark.parametrize("name, bound", [("mobilenet_v2", True), ("mobilenet_v3_small", True),
                                         ("efficientnet-small", True), ("regnet-y-small", True),
                                         ("resnext-small", False),   # its bound alone takes ~12 s
                                         ("squeezenet1_0", True), ("googlenet", True), ("densenet-small", True),
                                         ("densenet121", True), ("shufflenet_v2_x0_5", True)])
def test_prune_compacts_to_the_masked_model(name, bound):
    model = _model(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    # weighting "mean": with raw l1 scores the greedy empties the (small-weight) classifier of these inits,
    # and a constant output would compare nothing
    small, report = prune(model, x[:1], sparsity=0.5, method="network-greedy", weighting="mean", bound=bound)
    ext = report.extraction
    assert (ext.tied or "cat" in ext.ops.values()) and report.result.feasible
    masked = apply(copy.deepcopy(model), report.result.solution, ext)
    with torch.no_grad():
        want, got = masked(x), small(x)
    assert want.abs().max() > 0 and want.std() > 0 and (want[0] - want[1]).abs().max() > 0
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert sum(p.numel() for p in small.parameters()) < 0.75 * sum(p.numel() for p in model.parameters())
    if bound:
        res = report.result
        assert res.lower_bound is not None and 0 <= res.lower_bound <= res.cost and np.isfinite(res.gap)


def _transformer(name: str):
    """torchvision's ViT and ConvNeXt at a reduced size; the ViT head (zero-initialized) and ConvNeXt's layer
    scale (1e-6) get values that make the blocks and the classifier count in the outputs compared."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    if name == "vit-small":
        model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                  num_classes=10)
    else:
        model = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)], num_classes=10)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.startswith("heads") or pname.endswith("layer_scale"):
                p.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["vit-small", "convnext-small"])
def test_a_transformer_and_a_convnext_prune_to_the_masked_model(name):
    model = _transformer(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    small, report = prune(model, x[:1], sparsity=0.5, method="network-greedy", weighting="mean", bound=True)
    ext, res = report.extraction, report.result
    assert {"full", "merge" if name == "vit-small" else "channelwise"} <= set(ext.ops.values())
    hidden = [n for n in ext.instance.layer_names if n.endswith(("mlp.0", "block.3"))]
    assert hidden and all(not ext.instance.group(f"{n}:out").protected for n in hidden)
    masked = apply(copy.deepcopy(model), res.solution, ext)
    with torch.no_grad():
        want, got = masked(x), small(x)
    assert want.std() > 0 and (want[0] - want[1]).abs().max() > 0
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert sum(p.numel() for p in small.parameters()) < 0.8 * sum(p.numel() for p in model.parameters())
    assert res.lower_bound is not None and 0 <= res.lower_bound <= res.cost and np.isfinite(res.gap)
