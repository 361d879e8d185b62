"""What the effects share: computed once per pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rec. 709 luma weights.
_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass
class EffectInputs:
    image: torch.Tensor  # B×3×H×W in [0, 1]
    luma: torch.Tensor  # B×1×H×W in [0, 1]
    mask: torch.Tensor  # B×1×H×W in [0, 1], the soft alpha


def luminance(image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def prepare(image: torch.Tensor, mask: torch.Tensor) -> EffectInputs:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
    if mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(f"mask must be B×1×H×W matching the image, got {tuple(mask.shape)}")
    return EffectInputs(image=image, luma=luminance(image), mask=mask.clamp(0, 1))


def with_alpha(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.cat((rgb.clamp(0, 1), mask), dim=1)
