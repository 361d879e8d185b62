"""The four effects as functions over batched tensors, registered by name.

Every effect takes the shared inputs of one pass (``EffectInputs``: the B×3×H×W image in [0, 1],
its B×1×H×W luminance and the B×1×H×W soft mask) and returns B×4×H×W RGBA in [0, 1] whose alpha
is the mask. The same code runs on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from workers.effect_names import EFFECT_NAMES
from workers.effects.common import EffectInputs, prepare
from workers.effects.stylise import color, dithering, enhanced_black_white, popart

EffectFn = Callable[[EffectInputs], torch.Tensor]

EFFECTS: dict[str, EffectFn] = {
    "color": color,
    "enhancedblackwhite": enhanced_black_white,
    "popart": popart,
    "dithering": dithering,
}
assert tuple(EFFECTS) == EFFECT_NAMES


def apply_effects(
    image: torch.Tensor, mask: torch.Tensor, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Compute the shared inputs once, then each requested effect (B×4×H×W RGBA each)."""
    unknown = [n for n in names if n not in EFFECTS]
    if unknown:
        raise KeyError(f"unknown effects {unknown}; known: {', '.join(EFFECTS)}")
    shared = prepare(image, mask)
    return {name: EFFECTS[name](shared) for name in names}


__all__ = ["EFFECTS", "EffectInputs", "apply_effects", "prepare"]
