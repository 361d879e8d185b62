"""The four effects as functions over batched tensors, registered by name.

Every effect takes one pass's ``EffectInputs`` (the B×3×H×W image in [0, 1], the B×1×H×W soft
alpha, and the stages they share: foreground colours, luma, local contrast) and returns its
B×C×H×W colour; the alpha is the pass's. ``render`` computes the shared stages once for all
requested effects; ``apply_effects`` gives the same as B×4×H×W RGBA. The same code runs on
CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from contract.effects import EFFECT_NAMES
from workers.effects.common import EffectInputs, prepare
from workers.effects.stylise import POP_PALETTE, color, dithering, enhanced_black_white, popart


@dataclass(frozen=True)
class Effect:
    fn: Callable[[EffectInputs], torch.Tensor]
    channels: int  # 3: colour; 1: grey
    # "tone": continuous; "palette": only the colours of ``palette``; "bilevel": 0 or 1 only.
    # The last two must stay lossless.
    kind: str = "tone"
    palette: tuple[tuple[float, float, float], ...] = ()


EFFECTS: dict[str, Effect] = {
    "color": Effect(color, 3),
    "enhancedblackwhite": Effect(enhanced_black_white, 1),
    "popart": Effect(popart, 3, "palette", POP_PALETTE),
    "dithering": Effect(dithering, 1, "bilevel"),
}
assert tuple(EFFECTS) == EFFECT_NAMES


@dataclass
class Rendered:
    alpha: torch.Tensor  # B×1×H×W, shared by every effect
    colours: dict[str, torch.Tensor]  # name → B×C×H×W straight colour


def render(image: torch.Tensor, mask: torch.Tensor, names: Sequence[str]) -> Rendered:
    """One fused pass: shared stages once, then each requested effect."""
    unknown = [n for n in names if n not in EFFECTS]
    if unknown:
        raise KeyError(f"unknown effects {unknown}; known: {', '.join(EFFECTS)}")
    shared = prepare(image, mask)
    return Rendered(shared.alpha, {name: EFFECTS[name].fn(shared) for name in names})


def apply_effects(
    image: torch.Tensor, mask: torch.Tensor, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Each requested effect as B×4×H×W RGBA in [0, 1] whose alpha is the (8-bit) mask."""
    rendered = render(image, mask, names)
    return {
        name: torch.cat((colour.expand(-1, 3, -1, -1), rendered.alpha), dim=1)
        for name, colour in rendered.colours.items()
    }


__all__ = ["EFFECTS", "Effect", "EffectInputs", "Rendered", "apply_effects", "prepare", "render"]
