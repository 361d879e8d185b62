"""InSPyReNet's decoder blocks: pyramidal axial attention (PAA) and scale-invariant context
attention (SICA). Attribute names match the published checkpoints.

Two reshapes below regroup elements rather than move axes (``reshape(b, -1, axis)`` in
``AxialAttention`` and ``reshape(b, n, -1)`` of a B×C×h×w map in ``SICA``); the weights were trained
through them, so they are kept as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """Conv (no bias, 'same' padding for odd kernels) → optional batch norm → optional ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        dilation: int = 1,
        bn: bool = True,
        relu: bool = False,
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        self.conv = nn.Conv2d(
            in_ch, out_ch, (kh, kw), padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_ch) if bn else None
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)


class AxialAttention(nn.Module):
    """Self-attention along one axis ('h' or 'w'), added back with a learnt gain ``gamma``."""

    def __init__(self, channels: int, axis: str) -> None:
        super().__init__()
        self.axis = axis
        self.query_conv = ConvBN(channels, channels // 8, 1)
        self.key_conv = ConvBN(channels, channels // 8, 1)
        self.value_conv = ConvBN(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        length = h if self.axis == "h" else w
        query = self.query_conv(x).reshape(b, -1, length).permute(0, 2, 1)
        key = self.key_conv(x).reshape(b, -1, length)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)
        value = self.value_conv(x).reshape(b, -1, length)
        out = torch.bmm(value, attention.permute(0, 2, 1)).reshape(b, c, h, w)
        return self.gamma * out + x


class PAAKernel(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, receptive: int) -> None:
        super().__init__()
        self.conv0 = ConvBN(in_ch, out_ch, 1)
        self.conv1 = ConvBN(out_ch, out_ch, (1, receptive))
        self.conv2 = ConvBN(out_ch, out_ch, (receptive, 1))
        self.conv3 = ConvBN(out_ch, out_ch, 3, dilation=receptive)
        self.Hattn = AxialAttention(out_ch, "h")
        self.Wattn = AxialAttention(out_ch, "w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(self.conv0(x)))
        return self.conv3(self.Hattn(x) + self.Wattn(x))


class PAAEncoder(nn.Module):
    """Context module on one backbone feature: four receptive fields, concatenated, residual."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.branch0 = ConvBN(in_ch, out_ch, 1)
        self.branch1 = PAAKernel(in_ch, out_ch, 3)
        self.branch2 = PAAKernel(in_ch, out_ch, 5)
        self.branch3 = PAAKernel(in_ch, out_ch, 7)
        self.conv_cat = ConvBN(4 * out_ch, out_ch, 3)
        self.conv_res = ConvBN(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        return self.relu(self.conv_cat(torch.cat(branches, 1)) + self.conv_res(x))


class PAADecoder(nn.Module):
    """Fuses the three coarsest contexts at the finest of them; returns (features, logits)."""

    def __init__(self, in_ch: int, depth: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(in_ch, depth, 3)
        self.conv2 = ConvBN(depth, depth, 3)
        self.conv3 = ConvBN(depth, depth, 3)
        self.conv4 = ConvBN(depth, depth, 3)
        self.conv5 = ConvBN(depth, 1, 3, bn=False)
        self.Hattn = AxialAttention(depth, "h")
        self.Wattn = AxialAttention(depth, "w")

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        size = features[0].shape[-2:]
        upsampled = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=True) for f in features[1:]
        ]
        x = self.conv1(torch.cat(upsampled[::-1], 1))
        x = self.conv4(self.conv3(self.conv2(self.Hattn(x) + self.Wattn(x))))
        return x, self.conv5(x)


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SICA(nn.Module):
    """Scale-invariant context attention: pools features by foreground / background / uncertain
    (and, with ``lmap_in``, the finer level's Laplacian sign) at a fixed size derived from the
    base size, then attends from every pixel to those few context vectors.
    Returns (features, Laplacian logits)."""

    def __init__(self, in_ch: int, depth: int, stage_size: int, lmap_in: bool = False) -> None:
        super().__init__()
        self.depth, self.stage_size, self.lmap_in = depth, stage_size, lmap_in
        self.contexts = 5 if lmap_in else 3
        self.conv_query = nn.Sequential(
            ConvBN(in_ch, depth, 3, relu=True), ConvBN(depth, depth, 3, relu=True)
        )
        self.conv_key = nn.Sequential(
            ConvBN(in_ch, depth, 1, relu=True), ConvBN(depth, depth, 1, relu=True)
        )
        self.conv_value = nn.Sequential(
            ConvBN(in_ch, depth, 1, relu=True), ConvBN(depth, depth, 1, relu=True)
        )
        self.conv_out1 = ConvBN(depth, depth, 3, relu=True)
        self.conv_out2 = ConvBN(in_ch + depth, depth, 3, relu=True)
        self.conv_out3 = ConvBN(depth, depth, 3, relu=True)
        self.conv_out4 = ConvBN(depth, 1, 1)
        self.threshold = nn.Parameter(torch.tensor([0.5]))
        if lmap_in:
            self.lthreshold = nn.Parameter(torch.tensor([0.5]))

    def _probabilities(
        self, smap: torch.Tensor, lmap: torch.Tensor | None, size: torch.Size
    ) -> torch.Tensor:
        p = torch.sigmoid(_resize(smap, size)) - self.threshold
        prob = [p.clip(0, 1), (-p).clip(0, 1), self.threshold - p.abs()]
        if lmap is not None:
            lp = torch.sigmoid(_resize(lmap, size)) - self.lthreshold
            prob += [lp.clip(0, 1), (-lp).clip(0, 1)]
        return torch.cat(prob, 1)

    def forward(
        self, x: torch.Tensor, smap: torch.Tensor, lmap: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        prob = self._probabilities(smap, lmap if self.lmap_in else None, x.shape[-2:])
        size = (self.stage_size, self.stage_size)
        n = self.stage_size**2
        f = _resize(x, size).reshape(b, n, -1)
        prob = _resize(prob, size).reshape(b, self.contexts, n)
        context = torch.bmm(prob, f).permute(0, 2, 1).unsqueeze(3)  # B×C×contexts×1

        query = self.conv_query(x).reshape(b, self.depth, -1).permute(0, 2, 1)
        key = self.conv_key(context).reshape(b, self.depth, -1)
        value = self.conv_value(context).reshape(b, self.depth, -1).permute(0, 2, 1)
        similarity = torch.softmax(torch.bmm(query, key) * self.depth**-0.5, dim=-1)
        context = torch.bmm(similarity, value).permute(0, 2, 1).reshape(b, -1, h, w)

        x = torch.cat([x, self.conv_out1(context)], 1)
        x = self.conv_out3(self.conv_out2(x))
        return x, self.conv_out4(x)
