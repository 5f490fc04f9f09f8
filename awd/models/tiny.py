"""A small CNN for the embedded 8x8 digits dataset: fast on CPU (~94 k parameters), still has BN layers and
conv/linear weights so every weight-decay, pruning and attack code path is exercised."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} must be an integer >= 1")
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width),
            *_conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            *_conv_bn_relu(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))
