"""The four looks. Each is a small function over ``EffectInputs`` returning B×4×H×W RGBA."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from workers.effects.common import EffectInputs, with_alpha

# Warhol-like palette, dark to light: ink, magenta, orange, yellow.
_POP_PALETTE = ((0.11, 0.05, 0.35), (0.93, 0.10, 0.55), (1.00, 0.55, 0.05), (1.00, 0.93, 0.20))


def color(inp: EffectInputs) -> torch.Tensor:
    """The subject in its own colours."""
    return with_alpha(inp.image, inp.mask)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def _s_curve(x: torch.Tensor, strength: float = 0.6) -> torch.Tensor:
    # Blend of identity and smoothstep: deepens shadows and lifts highlights gently.
    smooth = x * x * (3 - 2 * x)
    return (1 - strength) * x + strength * smooth


def enhanced_black_white(inp: EffectInputs) -> torch.Tensor:
    """Luminance with local contrast enhancement and a gentle S-curve."""
    luma = inp.luma
    sigma = max(2.0, min(luma.shape[-2:]) / 48)
    local_mean = _gaussian_blur(luma, sigma)
    # Boost detail relative to the neighbourhood, bounded so flat areas do not get noisy.
    detail = (luma - local_mean).clamp(-0.25, 0.25)
    enhanced = (local_mean + 1.8 * detail).clamp(0, 1)
    toned = _s_curve(enhanced)
    return with_alpha(toned.expand(-1, 3, -1, -1), inp.mask)


def popart(inp: EffectInputs) -> torch.Tensor:
    """Bold posterised tones in a vivid palette, thresholds set by the subject's own tones."""
    luma = _gaussian_blur(inp.luma, 1.0)
    levels = len(_POP_PALETTE)
    weights = (inp.mask > 0.5).to(luma.dtype)
    # Per-image quantiles over the subject so every photo uses the whole palette.
    bands = []
    for b in range(luma.shape[0]):
        values = luma[b][weights[b] > 0]
        if values.numel() < levels:
            values = luma[b].flatten()
        qs = torch.linspace(0, 1, levels + 1, device=luma.device, dtype=luma.dtype)[1:-1]
        thresholds = torch.quantile(values.float()[:1_000_000], qs.float()).to(luma.dtype)
        bands.append(torch.bucketize(luma[b].contiguous(), thresholds))
    index = torch.stack(bands)  # B×1×H×W in [0, levels)
    palette = torch.tensor(_POP_PALETTE, dtype=luma.dtype, device=luma.device)  # L×3
    rgb = palette[index.squeeze(1)].permute(0, 3, 1, 2)
    return with_alpha(rgb, inp.mask)


def dithering(inp: EffectInputs) -> torch.Tensor:
    """1-bit Floyd–Steinberg ink of the subject's luminance (Pillow's error diffusion)."""
    luma = (inp.luma.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = np.empty_like(luma)
    for b in range(luma.shape[0]):
        img = Image.fromarray(luma[b, 0], "L")
        out[b, 0] = np.asarray(img.convert("1", dither=Image.Dither.FLOYDSTEINBERG).convert("L"))
    ink = torch.from_numpy(out).to(inp.luma.device, inp.luma.dtype) / 255
    return with_alpha(ink.expand(-1, 3, -1, -1), inp.mask)
