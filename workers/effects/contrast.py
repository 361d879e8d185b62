"""Local contrast on tensors: contrast-limited adaptive histogram equalisation (CLAHE).

As in Zuiderveld's CLAHE (Graphics Gems IV, 1994): the image is cut into a grid of tiles,
each tile's histogram is clipped (which limits how much noise flat areas gain) and turned into
an equalising tone map, and every pixel takes the bilinear blend of the maps of the four tile
centres around it, so tile borders never show. Our choices:

- histograms are weighted by the alpha, so the subject is equalised against itself rather
  than against the background it is cut from, and each tile holds a small uniform prior, so
  a tile that is nearly all background keeps a near-identity map;
- histograms are counted on every ``stride``-th pixel each way (a tile at 2048 px still sees
  thousands of samples), and the maps are applied in one trilinear ``grid_sample`` over
  (tile row, tile column, grey level): bilinear between tile centres as in CLAHE, and linear
  between grey levels, so a continuous input gets no 8-bit steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BINS = 256


def _tile_grid(height: int, width: int, tiles_long: int) -> tuple[int, int]:
    if height >= width:
        return tiles_long, max(1, round(tiles_long * width / height))
    return max(1, round(tiles_long * height / width)), tiles_long


def _tile_histograms(
    luma: torch.Tensor, weight: torch.Tensor, ty: int, tx: int, stride: int
) -> torch.Tensor:
    """B×ty×tx×BINS weighted histograms of the sampled pixels."""
    batch, _, height, width = luma.shape
    device = luma.device
    sample = luma[:, 0, ::stride, ::stride]
    bins = (sample * (BINS - 1)).round_().long().clamp_(0, BINS - 1)
    rows = torch.arange(0, height, stride, device=device) * ty // height
    cols = torch.arange(0, width, stride, device=device) * tx // width
    tile = rows.view(-1, 1) * tx + cols.view(1, -1)
    image = torch.arange(batch, device=device).view(-1, 1, 1) * (ty * tx)
    index = ((image + tile) * BINS + bins).view(-1)
    # Weights in 8-bit levels, whole numbers in float64: sums are exact in any order.
    levels = (weight[:, 0, ::stride, ::stride].reshape(-1).double() * 255).round_()
    hist = torch.zeros(batch * ty * tx * BINS, device=device, dtype=torch.float64)
    hist.index_add_(0, index, levels)
    return hist.view(batch, ty, tx, BINS)


def _tone_maps(
    hist: torch.Tensor, clip_limit: float, prior: float, tile_pixels: float
) -> torch.Tensor:
    """Float32 maps from whole-number float64 histograms. Every step but the last division
    is exact whatever the summing order, so any device, and the browser's module (wasm/),
    gets the same maps: the prior and the clip level are whole numbers too."""
    prior_mass = round(prior * tile_pixels * 255 / BINS)
    hist = hist + (max(1, prior_mass) if prior > 0 else prior_mass)
    total = hist.sum(-1, keepdim=True).clamp(min=1)
    # Clip to a multiple of the flat level and hand the excess back to every bin equally.
    clipped = torch.minimum(hist, (clip_limit * total / BINS).floor())
    excess = total - clipped.sum(-1, keepdim=True)
    # The map at a bin is the mass below its centre, the excess spread evenly
    # ((cumsum − clipped/2 + (i + ½)·excess/BINS) / total, doubled to stay whole): a flat
    # histogram maps to the identity.
    odd = torch.arange(1, 2 * BINS, 2, device=hist.device, dtype=hist.dtype)
    below = 2 * clipped.cumsum(-1) - clipped + odd * excess / BINS
    return (below / (2 * total)).float()


def _axis(size: int, tiles: int, device: torch.device) -> torch.Tensor:
    """Pixel centres in grid_sample's coordinates, where −1 and 1 are the outer tile centres."""
    if tiles == 1:
        return torch.zeros(size, device=device)
    centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * tiles / size - 0.5
    return centres * (2 / (tiles - 1)) - 1


def clahe(
    luma: torch.Tensor,
    weight: torch.Tensor,
    tiles_long: int = 8,
    clip_limit: float = 2.5,
    prior: float = 0.02,
) -> torch.Tensor:
    """Equalise B×1×H×W ``luma`` in [0, 1] locally, tile histograms weighted by ``weight``.

    ``clip_limit`` is the highest a histogram bin may be, in multiples of a flat histogram's
    bin; ``prior`` is the uniform mass each tile holds, as a fraction of its pixel count.
    """
    batch, _, height, width = luma.shape
    ty, tx = _tile_grid(height, width, tiles_long)
    # About 4 000 samples per tile at least, whatever the size.
    stride = max(1, int((height * width / (ty * tx) / 4000) ** 0.5))
    hist = _tile_histograms(luma, weight, ty, tx, stride)
    maps = _tone_maps(hist, clip_limit, prior, height * width / (ty * tx) / stride**2)
    # grid_sample volume: B×1×D×H×W with D the grey level, H and W the tile grid.
    volume = maps.permute(0, 3, 1, 2).unsqueeze(1).to(luma.dtype)
    ys = _axis(height, ty, luma.device).view(1, -1, 1).expand(batch, height, width)
    xs = _axis(width, tx, luma.device).view(1, 1, -1).expand(batch, height, width)
    grid = torch.stack((xs.to(luma.dtype), ys.to(luma.dtype), luma[:, 0] * 2 - 1), dim=-1)
    out = F.grid_sample(
        volume, grid.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[:, :, 0]
