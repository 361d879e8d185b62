"""Res2Net-50 v1b, 26w×4s (Gao et al., TPAMI 2021) as InSPyReNet builds it.

v1b: a deep stem of three 3×3 convs and average-pool shortcuts. InSPyReNet's copy keeps the
classifier's strides but also dilates the last two stages (layer3 by 2, layer4 by 4·[1, 2, 4]),
so this is not torchvision's or timm's default configuration. Module paths match the published
checkpoints (``layer2.0.convs.1``, ``layer3.0.downsample.1``); the classifier head is not built.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottle2neck(nn.Module):
    """1×1 conv, then ``scale`` channel groups where each 3×3 conv also sees the previous group's
    output (hierarchical residual), then 1×1 conv. The first block of a stage (``stage=True``)
    convolves every group independently and average-pools the last one instead."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        stage: bool = False,
        base_width: int = 26,
        scale: int = 4,
    ) -> None:
        super().__init__()
        width = planes * base_width // 64
        self.width, self.stage = width, stage
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stage else nn.Identity()
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, 1)
        outs: list[torch.Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            sp = groups[i] if i == 0 or self.stage else outs[-1] + groups[i]
            outs.append(self.relu(bn(conv(sp))))
        outs.append(self.pool(groups[-1]))
        out = self.bn3(self.conv3(torch.cat(outs, 1)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Res2Net(nn.Module):
    """``forward(x)``: B×3×H×W → [stem (64, /4), layer1 (256, /4), layer2 (512, /8),
    layer3 (1024, /16), layer4 (2048, /32)], each B×channels×h×w."""

    channels = [64, 256, 512, 1024, 2048]

    def __init__(self) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        # Blocks per stage 3, 4, 6, 3; one dilation per block.
        self.layer1 = self._make_layer(64, stride=1, dilations=[1, 1, 1])
        self.layer2 = self._make_layer(128, stride=2, dilations=[1, 1, 1, 1])
        self.layer3 = self._make_layer(256, stride=2, dilations=[2] * 6)
        self.layer4 = self._make_layer(512, stride=2, dilations=[4, 8, 16])

    def _make_layer(self, planes: int, stride: int, dilations: list[int]) -> nn.Sequential:
        out = planes * Bottle2neck.expansion
        downsample = nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(self.inplanes, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        first = Bottle2neck(self.inplanes, planes, stride, dilations[0], downsample, stage=True)
        self.inplanes = out
        rest = [Bottle2neck(out, planes, dilation=d) for d in dilations[1:]]
        return nn.Sequential(first, *rest)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs
