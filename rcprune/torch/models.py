"""A CIFAR-style ResNet (He et al. 2016, section 4.2): a 3x3 stem, three stages of basic blocks with
``width``, ``2*width``, ``4*width`` channels, 1x1-conv shortcuts where the shape changes (option B), global
average pooling and a linear classifier. ``depth = 6n + 2`` (ResNet-20: n = 3).

>>> import torch
>>> m = cifar_resnet(depth=8, width=4, in_channels=1, num_classes=3)
>>> m(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 3])
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rcprune.validation import InvalidInstanceError

__all__ = ["cifar_resnet", "BasicBlock", "CifarResNet", "randomize_batchnorm"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """See the module docstring."""

    def __init__(self, depth: int = 20, width: int = 16, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InvalidInstanceError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        stages, c = [], width
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = [BasicBlock(c, planes, 1 if i == 0 else 2)] + [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int = 20, width: int = 16, in_channels: int = 3, num_classes: int = 10,
                 seed: int | None = None) -> CifarResNet:
    """A :class:`CifarResNet`; with ``seed``, its initial weights are drawn from that seed."""
    if seed is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return CifarResNet(depth, width, in_channels, num_classes)
    return CifarResNet(depth, width, in_channels, num_classes)


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (mean in [-0.1, 0.1), var in [0.5, 1.5), gamma in
    [0.5, 1.5), beta in [-0.2, 0.2)), so a random-weight model's channels are neither trivially zero nor
    all alike; returns ``model`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()
