"""Pre-activation WideResNet (Zagoruyko & Komodakis 2016) in the form used for adversarial training
(Madry et al., TRADES, Rice et al. 2020): BN-ReLU before each conv, and where the shape changes the 1x1 shortcut
conv reads the *activated* input. WRN-28-10 for 10 classes has 36,479,194 parameters."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PreActWideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(act))  # None exactly when equal_in_out


class PreActWideResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 28, width: int = 10, dropout: float = 0.0):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth={depth!r} is not a WideResNet depth; allowed: 6n+4 with n >= 1 (10, 16, 22, 28, 34, ...)")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width={width!r} must be an integer >= 1")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout={dropout!r} must be a number in [0, 1)")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [PreActWideBlock(widths[i] if b == 0 else widths[i + 1], widths[i + 1], stride if b == 0 else 1, dropout) for b in range(n)]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init with fan_out, as in the reference WideResNet code the adversarial-training literature reuses.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))
