"""The four looks. Each takes the pass's ``EffectInputs`` and returns B×C×H×W straight
(not premultiplied) colour in [0, 1]: C = 3 for colour looks, 1 for grey ones. The alpha is
the pass's, shared by all."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from workers.effects.common import EffectInputs, s_curve, weighted_quantiles
from workers.effects.filters import guided_smooth

# Warhol-like screen-print inks, dark to light.
POP_PALETTE = (
    (0.07, 0.04, 0.16),  # ink
    (0.16, 0.26, 0.86),  # cobalt
    (0.94, 0.13, 0.53),  # magenta
    (1.00, 0.56, 0.10),  # orange
    (1.00, 0.92, 0.24),  # lemon
)


def color(inp: EffectInputs) -> torch.Tensor:
    """The subject in its own colours."""
    return inp.foreground


def enhanced_black_white(inp: EffectInputs) -> torch.Tensor:
    """Luma with local contrast enhancement and a gentle S-curve."""
    return s_curve(inp.local_contrast, 0.35)


def popart(inp: EffectInputs) -> torch.Tensor:
    """Bold posterised tones in a vivid palette; band edges at the subject's own quantiles."""
    # Flat areas, crisp shapes: smoothing that keeps edges, before cutting into bands.
    long_edge = max(inp.image.shape[-2:])
    tone = guided_smooth(inp.luma, max(1, round(long_edge / 128)), 0.006, max(1, long_edge // 512))
    levels = len(POP_PALETTE)
    qs = torch.linspace(0, 1, levels + 1, device=tone.device)[1:-1]
    thresholds = weighted_quantiles(tone, inp.alpha, qs)  # B×(levels−1)
    index = torch.searchsorted(thresholds.contiguous(), tone.flatten(1).contiguous())
    palette = torch.tensor(POP_PALETTE, dtype=tone.dtype, device=tone.device)
    return palette[index.view(tone.shape[0], *tone.shape[2:])].permute(0, 3, 1, 2)


def dithering(inp: EffectInputs) -> torch.Tensor:
    """1-bit Floyd–Steinberg ink of the subject's luma (Pillow's error diffusion)."""
    tone = s_curve(inp.local_contrast, 0.2)
    # Paper white outside the subject: no error diffuses in from the background.
    tone = torch.where(inp.alpha > 0, tone, torch.ones_like(tone))
    grey = (tone * 255).round_().to(torch.uint8).cpu().numpy()
    ink = np.empty_like(grey)

    def diffuse(b: int) -> None:
        page = Image.fromarray(grey[b, 0], "L").convert("1", dither=Image.Dither.FLOYDSTEINBERG)
        ink[b, 0] = np.asarray(page.convert("L"))

    # Error diffusion is serial within an image (22 ms at 2048 px) but Pillow releases the GIL
    # while it runs, so a batch's images diffuse side by side.
    if grey.shape[0] == 1:
        diffuse(0)
    else:
        list(_diffusion_pool().map(diffuse, range(grey.shape[0])))
    return torch.from_numpy(ink).to(inp.image.device, inp.image.dtype) / 255


@functools.cache
def _diffusion_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dither")
