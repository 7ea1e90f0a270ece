"""A small CIFAR-style ResNet with calibrated BatchNorm statistics and a batch of data, for torch tests."""
import torch

from rcprune.torch.models import cifar_resnet


def calibrated_resnet(batch: int = 48, size: int = 12):
    """``(model in eval mode, inputs, labels)``: ResNet-8 width 8, one input channel, four classes; the
    BatchNorm running statistics come from one pass over the inputs."""
    model = cifar_resnet(depth=8, width=8, in_channels=1, num_classes=4, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, size, size, generator=g)
    y = torch.randint(0, 4, (batch,), generator=g)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x, y
