"""The four effects as functions over batched tensors, registered by name.

Every effect takes one pass's ``EffectInputs`` (the B×3×H×W image in [0, 1], the B×1×H×W soft
alpha, and the stages they share: foreground colours, luma, local contrast) and returns its
B×C×H×W colour; the alpha is the pass's. ``render`` computes the shared stages once for all
requested effects; ``apply_effects`` gives the same as B×4×H×W RGBA. The same code runs on
CPU and CUDA.

An effect whose last step may run on the host (dithering's error diffusion, where the device
has no kernel for it) says so with a ``HostStep``: ``render(..., defer_host_steps=True)`` then
stops before that step and hands its uint8 input over in ``Rendered.deferred``, so the worker
can finish it on its thread pool after the device is free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from contract.effects import EFFECT_NAMES
from workers.effects import dither_cuda
from workers.effects.common import EffectInputs, prepare
from workers.effects.dither import diffuse, floyd_steinberg
from workers.effects.stylise import (
    POP_PALETTE,
    color,
    dithering,
    dithering_grey,
    enhanced_black_white,
    popart,
)


@dataclass(frozen=True)
class HostStep:
    """An effect's last step, which runs on the host where the device has no kernel for it.

    ``before`` is the effect up to that step (B×C×H×W uint8 on the device); ``on_host`` does
    the step for one image (H×W×C uint8 in and out); ``runs_on(tensor)`` says whether the
    device holding ``before``'s output can do it there, and ``on_device`` does it there (to
    the effect's colour)."""

    before: Callable[[EffectInputs], torch.Tensor]
    on_host: Callable[[np.ndarray], np.ndarray]
    runs_on: Callable[[torch.Tensor], bool]
    on_device: Callable[[torch.Tensor], torch.Tensor]


def _diffuse_channel(grey: np.ndarray) -> np.ndarray:
    return diffuse(grey[..., 0])[..., None]


def _ink(grey: torch.Tensor) -> torch.Tensor:
    return floyd_steinberg(grey).float() / 255


@dataclass(frozen=True)
class Effect:
    fn: Callable[[EffectInputs], torch.Tensor]
    channels: int  # 3: colour; 1: grey
    # "tone": continuous; "palette": only the colours of ``palette``; "bilevel": 0 or 1 only.
    # The last two must stay lossless.
    kind: str = "tone"
    palette: tuple[tuple[float, float, float], ...] = ()
    host_step: HostStep | None = None


EFFECTS: dict[str, Effect] = {
    "color": Effect(color, 3),
    "enhancedblackwhite": Effect(enhanced_black_white, 1),
    "popart": Effect(popart, 3, "palette", POP_PALETTE),
    "dithering": Effect(
        dithering,
        1,
        "bilevel",
        host_step=HostStep(dithering_grey, _diffuse_channel, dither_cuda.runs_on, _ink),
    ),
}
assert tuple(EFFECTS) == EFFECT_NAMES


@dataclass
class Rendered:
    alpha: torch.Tensor  # B×1×H×W, shared by every effect
    colours: dict[str, torch.Tensor]  # name → B×C×H×W straight colour
    # name → B×C×H×W uint8 input of the effect's host step, still to be done (see HostStep).
    deferred: dict[str, torch.Tensor] = field(default_factory=dict)


def render(
    image: torch.Tensor, mask: torch.Tensor, names: Sequence[str], defer_host_steps: bool = False
) -> Rendered:
    """One fused pass: shared stages once, then each requested effect; with
    ``defer_host_steps``, effects whose last step the device cannot take stop before it."""
    unknown = [n for n in names if n not in EFFECTS]
    if unknown:
        raise KeyError(f"unknown effects {unknown}; known: {', '.join(EFFECTS)}")
    shared = prepare(image, mask)
    rendered = Rendered(shared.alpha, {})
    for name in names:
        step = EFFECTS[name].host_step
        if defer_host_steps and step is not None:
            before = step.before(shared)
            if step.runs_on(before):
                rendered.colours[name] = step.on_device(before).to(image.dtype)
            else:
                rendered.deferred[name] = before
        else:
            rendered.colours[name] = EFFECTS[name].fn(shared)
    return rendered


def apply_effects(
    image: torch.Tensor, mask: torch.Tensor, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Each requested effect as B×4×H×W RGBA in [0, 1] whose alpha is the (8-bit) mask."""
    rendered = render(image, mask, names)
    return {
        name: torch.cat((colour.expand(-1, 3, -1, -1), rendered.alpha), dim=1)
        for name, colour in rendered.colours.items()
    }


__all__ = [
    "EFFECTS",
    "Effect",
    "EffectInputs",
    "HostStep",
    "Rendered",
    "apply_effects",
    "prepare",
    "render",
]
