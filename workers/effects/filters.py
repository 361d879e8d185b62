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


def cell_mean(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean of each ``factor``×``factor`` cell (a last partial cell averages what it has),
    summed in a fixed order with one rounding per addition: the browser's module (wasm/)
    gets the same floats. ``shrink`` is faster for the foreground, which needs no twin."""
    if factor <= 1:
        return x
    height, width = x.shape[-2:]
    rows, cols = -(-height // factor), -(-width // factor)
    padded = F.pad(x, (0, cols * factor - width, 0, rows * factor - height))
    total = padded[..., 0::factor, 0::factor]
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                total = total + padded[..., dy::factor, dx::factor]
    cell_rows = (
        (torch.arange(rows, device=x.device) * factor).neg_().add_(height).clamp_(max=factor)
    )
    cell_cols = (torch.arange(cols, device=x.device) * factor).neg_().add_(width).clamp_(max=factor)
    count = (cell_rows.view(-1, 1) * cell_cols.view(1, -1)).to(x.dtype)
    return total / count


def _linear_taps(source: int, size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each of ``size`` outputs: the two source indices and their float32 weights
    (half-pixel centres, as F.interpolate's bilinear without align_corners), in float64."""
    position = ((torch.arange(size, dtype=torch.float64) + 0.5) * (source / size) - 0.5).clamp_(
        min=0
    )
    first = position.floor()
    fraction = position - first
    first_index = first.long()
    second_index = (first_index + 1).clamp_(max=source - 1)
    weights = ((1 - fraction).float(), fraction.float())
    return first_index.to(device), second_index.to(device), *(w.to(device) for w in weights)


def bilinear_up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize to ``size`` (H, W), rows then columns, one rounding per operation
    (F.interpolate's kernel may fuse its multiply-adds; the browser's module cannot)."""
    height, width = size
    if tuple(x.shape[-2:]) == (height, width):
        return x
    top, bottom, w_top, w_bottom = _linear_taps(x.shape[-2], height, x.device)
    rows = x.index_select(-2, top) * w_top.view(-1, 1) + x.index_select(-2, bottom) * w_bottom.view(
        -1, 1
    )
    left, right, w_left, w_right = _linear_taps(x.shape[-1], width, x.device)
    return rows.index_select(-1, left) * w_left + rows.index_select(-1, right) * w_right


def guided_smooth(x: torch.Tensor, radius: int, eps: float, factor: int = 1) -> torch.Tensor:
    """Edge-preserving smoothing: the guided filter with ``x`` as its own guide.

    He, Sun and Tang (ECCV 2010); areas whose variance is below ``eps`` flatten to their mean
    and strong edges stay sharp. With ``factor`` > 1 the local linear coefficients are found
    on an image that much smaller and applied at full size (He and Sun, "Fast Guided Filter",
    2015): the cost moves off the full-size image but for one multiply-add. Every step rounds
    once per operation, so the browser's module (wasm/) computes the same floats.
    """
    small = cell_mean(x, factor)
    r = max(1, round(radius / factor))
    means = box_blur(torch.cat((small, small * small), dim=1), r)
    mean, mean_sq = means[:, :1], means[:, 1:]
    var = (mean_sq - mean * mean).clamp_(min=0)
    a = var / (var + eps)
    b = mean - a * mean
    ab = bilinear_up(box_blur(torch.cat((a, b), dim=1), r), x.shape[-2:])
    return ab[:, 1:] + ab[:, :1] * x
