"""IS-Net (Qin et al., ECCV 2022, "Highly Accurate Dichotomous Image Segmentation").

A native torch definition of the ``ISNetDIS`` segmenter. Module paths match the node names of
the published ONNX export (``stage1.rebnconvin.conv_s1``), so weights load by name. Batch norm
is folded into the convolutions in that export, so each ``REBNCONV`` is conv (with bias) + ReLU.

Inference returns only the final mask: the five extra side outputs are training aids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.config import ModelConfig

ISNET_CONFIG = ModelConfig(
    family="isnet",
    variant="general-use",
    input_size=1024,
    mean=(0.5, 0.5, 0.5),
    std=(1.0, 1.0, 1.0),
)


def _upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 conv (batch norm folded in) + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.conv_s1(x))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(2, stride=2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels (RSU7 .. RSU4) with pooling between levels.

    Encoder convs ``rebnconv1..height`` (the last one dilated by 2) and decoder convs
    ``rebnconv{height-1}d..1d``; pools are named ``pool1..pool{height-2}`` as in the export.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for level in range(2, height):
            setattr(self, f"rebnconv{level}", REBNCONV(mid_ch, mid_ch))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dilation=2))
        for level in range(1, height - 1):
            setattr(self, f"pool{level}", _pool())
        for level in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{level}d", REBNCONV(mid_ch * 2, mid_ch))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        encoded = [self.rebnconv1(hxin)]
        for level in range(2, self.height):
            pooled = getattr(self, f"pool{level - 1}")(encoded[-1])
            encoded.append(getattr(self, f"rebnconv{level}")(pooled))
        hx = getattr(self, f"rebnconv{self.height}")(encoded[-1])
        for level in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{level}d")(torch.cat((hx, encoded[level - 1]), 1))
            if level > 1:
                hx = _upsample_like(hx, encoded[level - 2])
        return hx + hxin


class RSU4F(nn.Module):
    """The dilated RSU block used at the lowest resolutions: no pooling, dilations 1/2/4/8."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dilation=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dilation=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dilation=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dilation=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dilation=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


class ISNet(nn.Module):
    """ISNetDIS: a U^2-Net-style encoder/decoder of RSU blocks.

    ``forward(x)``: x is B×3×H×W, normalised per ``ISNET_CONFIG``; returns B×1×H×W mask
    probabilities in [0, 1] (the sigmoid of side output 1, upsampled to the input size).
    """

    config = ISNET_CONFIG

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.stage1 = RSU(7, 64, 32, 64)
        self.pool12 = _pool()
        self.stage2 = RSU(6, 64, 32, 128)
        self.pool23 = _pool()
        self.stage3 = RSU(5, 128, 64, 256)
        self.pool34 = _pool()
        self.stage4 = RSU(4, 256, 128, 512)
        self.pool45 = _pool()
        self.stage5 = RSU4F(512, 256, 512)
        self.pool56 = _pool()
        self.stage6 = RSU4F(512, 256, 512)
        self.stage5d = RSU4F(1024, 256, 512)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        # Only side1 feeds the final mask; the others (side2..side6) are training outputs and
        # are not built, so their weights are dropped by the checkpoint filter.
        self.side1 = nn.Conv2d(64, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx1 = self.stage1(self.conv_in(x))
        hx2 = self.stage2(self.pool12(hx1))
        hx3 = self.stage3(self.pool23(hx2))
        hx4 = self.stage4(self.pool34(hx3))
        hx5 = self.stage5(self.pool45(hx4))
        hx6 = self.stage6(self.pool56(hx5))

        hx5d = self.stage5d(torch.cat((_upsample_like(hx6, hx5), hx5), 1))
        hx4d = self.stage4d(torch.cat((_upsample_like(hx5d, hx4), hx4), 1))
        hx3d = self.stage3d(torch.cat((_upsample_like(hx4d, hx3), hx3), 1))
        hx2d = self.stage2d(torch.cat((_upsample_like(hx3d, hx2), hx2), 1))
        hx1d = self.stage1d(torch.cat((_upsample_like(hx2d, hx1), hx1), 1))
        return torch.sigmoid(_upsample_like(self.side1(hx1d), x))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the tensors the inference model uses (drops side2..side6), as float32."""
    return {
        key: tensor.float()
        for key, tensor in state_dict.items()
        if not key.startswith(("side2.", "side3.", "side4.", "side5.", "side6."))
    }
