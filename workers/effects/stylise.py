"""The four looks. Each takes the pass's ``EffectInputs`` and returns B×C×H×W straight
(not premultiplied) colour in [0, 1]: C = 3 for colour looks, 1 for grey ones. The alpha is
the pass's, shared by all."""

from __future__ import annotations

import torch

from workers.effects.common import EffectInputs, s_curve, weighted_quantiles
from workers.effects.dither import floyd_steinberg
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


def dithering_grey(inp: EffectInputs) -> torch.Tensor:
    """What ``dithering`` diffuses: the subject's luma with local contrast and a light S-curve,
    paper white outside the subject (no error diffuses in from the background); B×1×H×W
    uint8 on the pass's device."""
    tone = s_curve(inp.local_contrast, 0.2)
    tone = torch.where(inp.alpha > 0, tone, torch.ones_like(tone))
    return (tone * 255).round_().to(torch.uint8)


def dithering(inp: EffectInputs) -> torch.Tensor:
    """1-bit Floyd–Steinberg ink of the subject's luma (Pillow's error diffusion, exactly)."""
    return floyd_steinberg(dithering_grey(inp)).to(inp.image.dtype) / 255
