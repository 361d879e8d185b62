"""What the effects share, computed once per pass and only when an effect asks for it."""

from __future__ import annotations

from functools import cached_property

import torch

from workers.effects.contrast import clahe
from workers.effects.foreground import estimate_foreground

# Rec. 709 luma weights.
_LUMA = (0.2126, 0.7152, 0.0722)


def luminance(image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def s_curve(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Blend of the identity and smoothstep: deeper shadows, brighter highlights, same ends.

    Written as one rounding per operation (no ``torch.lerp``, whose CPU kernel fuses a
    multiply-add), so the browser's module (wasm/) gets the very same floats."""
    return x + (x * x * (3 - 2 * x) - x) * strength


def weighted_quantiles(x: torch.Tensor, weight: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    """B×Q quantiles of B×1×H×W ``x`` in [0, 1], each pixel counted by its ``weight``.

    From a 1024-bin histogram, so the cost is one pass whatever the image size.
    """
    bins = 1024
    batch = x.shape[0]
    index = (x.reshape(batch, -1) * (bins - 1)).round().long().clamp_(0, bins - 1)
    index = index + torch.arange(batch, device=x.device).view(-1, 1) * bins
    # Weights counted in 8-bit levels, as whole numbers in float64: every sum is exact in any
    # order, so the browser's module finds the same quantiles.
    levels = (weight.reshape(-1).double() * 255).round_()
    hist = torch.zeros(batch * bins, device=x.device, dtype=torch.float64)
    hist.index_add_(0, index.view(-1), levels)
    cdf = hist.view(batch, bins).cumsum(-1)
    total = cdf[:, -1:].clamp(min=1)
    targets = qs.to(cdf).view(1, -1) * total
    found = torch.searchsorted(cdf.contiguous(), targets.contiguous())
    return (found.clamp(max=bins - 1).to(x.dtype) + 0.5) / bins


class EffectInputs:
    """One pass's inputs and the stages effects share.

    ``image`` is B×3×H×W in [0, 1]; ``alpha`` is the B×1×H×W soft mask put on the 8-bit grid
    it will be stored on, so every effect's alpha is exactly the stored mask and "opaque"
    means exactly 1. Each stage is computed on first use and then kept for the pass.
    """

    def __init__(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
        if mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(f"mask must be B×1×H×W matching the image, got {tuple(mask.shape)}")
        self.image = image
        self.alpha = (mask.to(image.dtype).clamp(0, 1) * 255).round_() / 255

    @cached_property
    def foreground(self) -> torch.Tensor:
        """The subject's own colours under soft edges (B×3×H×W)."""
        return estimate_foreground(self.image, self.alpha)

    @cached_property
    def cutout(self) -> torch.Tensor:
        """The foreground as the colour cutout stores it: on 8 bits, black where the alpha is
        0 (B×3×H×W). The grey looks start from it, so a client holding the cutout can render
        them itself, to the same pixels (wasm/, docs/browser-effects.md)."""
        eight_bit = (self.foreground.clamp(0, 1) * 255).round_() / 255
        return torch.where(self.alpha > 0, eight_bit, torch.zeros_like(eight_bit))

    @cached_property
    def luma(self) -> torch.Tensor:
        """Luma of the stored cutout (B×1×H×W)."""
        return luminance(self.cutout)

    @cached_property
    def local_contrast(self) -> torch.Tensor:
        """Luma with CLAHE over the subject, blended back towards the original for realism
        (a lerp by 0.7, one rounding per operation: see ``s_curve``)."""
        return self.luma + (clahe(self.luma, self.alpha) - self.luma) * 0.7


def prepare(image: torch.Tensor, mask: torch.Tensor) -> EffectInputs:
    return EffectInputs(image, mask)
