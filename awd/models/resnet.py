"""CIFAR ResNets.

`resnet32`: He et al. 2016 (sec. 4.2), 3 stages of 16/32/64 channels with 5 basic blocks each and parameter-free
"option A" shortcuts (stride-2 subsampling + zero-padded channels): 0.46 M parameters, as in the paper's table.
`resnet34` / `resnet50`: torchvision's ImageNet ResNets with the usual CIFAR stem (3x3 stride-1 conv, no max-pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortcutA(nn.Module):
    """Identity shortcut that subsamples space and zero-pads new channels (no parameters)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_planes - in_planes
        self.pad_lo, self.pad_hi = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi))


class BasicBlockA(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity() if stride == 1 and in_planes == planes else ShortcutA(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, blocks_per_stage: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlockA(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet32(num_classes: int, in_channels: int = 3) -> nn.Module:
    return CifarResNet(num_classes, in_channels, blocks_per_stage=5)


def _cifar_stem(model: nn.Module, in_channels: int) -> nn.Module:
    # 32x32 inputs: a 7x7 stride-2 conv plus max-pool would leave 8x8 maps before layer1 and lose most detail.
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet34(num_classes: int, in_channels: int = 3) -> nn.Module:
    from torchvision.models import resnet as tv_resnet  # torchvision's import costs ~1.3 CPU-s per process

    return _cifar_stem(tv_resnet.resnet34(weights=None, num_classes=num_classes), in_channels)


def resnet50(num_classes: int, in_channels: int = 3) -> nn.Module:
    from torchvision.models import resnet as tv_resnet

    return _cifar_stem(tv_resnet.resnet50(weights=None, num_classes=num_classes), in_channels)
