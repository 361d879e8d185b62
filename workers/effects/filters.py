"""Blurs and resampling on B×C×H×W tensors; the same code on CPU and CUDA."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _box_mean_along(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    # A running sum makes the cost independent of the radius; windows are clipped at the
    # border and divided by their true size, so edges are not darkened by padding.
    n = x.shape[dim]
    radius = min(radius, n - 1)
    width = 2 * radius + 1
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [radius + 1, radius]
    csum = F.pad(x, pad).cumsum(dim)
    total = csum.narrow(dim, width, n) - csum.narrow(dim, 0, n)
    pos = torch.arange(n, device=x.device)
    count = (pos + radius + 1).clamp(max=n) - (pos - radius).clamp(min=0)
    shape = [1] * x.dim()
    shape[dim] = n
    return total / count.to(x.dtype).view(shape)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² window clipped to the image."""
    if radius < 1:
        return x
    # Running sums down columns are slow on CPU (strided); along rows of the transpose they
    # are not, and the copy costs less than the difference.
    x = _box_mean_along(x.transpose(2, 3).contiguous(), radius, 3).transpose(2, 3)
    return _box_mean_along(x, radius, 3)


def shrink(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average down by an integer factor (a last partial cell averages what it has)."""
    if factor <= 1:
        return x
    height, width = x.shape[-2:]
    if factor == 2 and height % 2 == 0 and width % 2 == 0:
        # Four strided adds: about twice as fast as avg_pool2d on CPU for the common case.
        rows = x[..., 0::2, :] + x[..., 1::2, :]
        return (rows[..., 0::2] + rows[..., 1::2]) * 0.25
    return F.avg_pool2d(x, factor, ceil_mode=True, count_include_pad=False)


def grow(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear up to ``size`` (H, W)."""
    height, width = size
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def guided_smooth(x: torch.Tensor, radius: int, eps: float, factor: int = 1) -> torch.Tensor:
    """Edge-preserving smoothing: the guided filter with ``x`` as its own guide.

    He, Sun and Tang (ECCV 2010); areas whose variance is below ``eps`` flatten to their mean
    and strong edges stay sharp. With ``factor`` > 1 the local linear coefficients are found
    on an image that much smaller and applied at full size (He and Sun, "Fast Guided Filter",
    2015): the cost moves off the full-size image but for one multiply-add.
    """
    small = shrink(x, factor)
    r = max(1, round(radius / factor))
    means = box_blur(torch.cat((small, small * small), dim=1), r)
    mean, mean_sq = means[:, :1], means[:, 1:]
    var = (mean_sq - mean * mean).clamp_(min=0)
    a = var / (var + eps)
    b = mean - a * mean
    ab = grow(box_blur(torch.cat((a, b), dim=1), r), x.shape[-2:])
    # Not addcmul: its CPU kernel may fuse the multiply-add; the browser's module (wasm/)
    # rounds each operation, as this does.
    return ab[:, 1:] + ab[:, :1] * x
