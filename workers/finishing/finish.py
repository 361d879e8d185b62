"""One job's finishing on the device, after the effects pass: crop to the subject, fit and
place on the canvas, then the background under every effect."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from contract.options import Finishing
from workers.finishing.compose import (
    blur_sigma,
    composite,
    cover,
    fill,
    gaussian_blur,
    place,
    srgb_to_linear,
)
from workers.finishing.geometry import FOREGROUND_THRESHOLD, Box, Plan, plan


class NoSubject(ValueError):
    """The mask is empty: there is nothing to crop to."""

    code = "no_subject"


@dataclass(frozen=True)
class Finished:
    """On the canvas: each effect's colour (3 channels once composited), the alpha every
    effect file carries, and the subject's own alpha (the ``mask`` output)."""

    colours: dict[str, torch.Tensor]  # name → C×H×W in [0, 1]
    alpha: torch.Tensor  # 1×H×W
    mask: torch.Tensor  # 1×H×W


def subject_box_on_device(alpha: torch.Tensor) -> Box:
    """The box of the 1×H×W alpha's pixels at or over the threshold (one sync)."""
    solid = alpha[0] * 255 >= FOREGROUND_THRESHOLD - 0.5
    rows, cols = solid.any(dim=1), solid.any(dim=0)
    first = torch.stack((rows.int().argmax(), cols.int().argmax()))
    last = torch.stack((rows.flip(0).int().argmax(), cols.flip(0).int().argmax()))
    found, (top, left), (bottom, right) = bool(rows.any()), first.tolist(), last.tolist()
    if not found:
        return Box(0, 0, 0, 0)
    height, width = solid.shape
    return Box(left, top, width - right - left, height - bottom - top)


def finish(
    image: torch.Tensor,
    alpha: torch.Tensor,
    colours: Mapping[str, torch.Tensor],
    smooth: Mapping[str, bool],
    finishing: Finishing,
    background: torch.Tensor | None,
) -> Finished:
    """``image`` 3×H×W and ``colours`` (each C×H×W) in [0, 1], ``alpha`` 1×H×W; ``smooth``
    says per effect whether it may be resampled smoothly; ``background``: the uploaded
    background image (3×h×w uint8) for background ``image``. Raises ``NoSubject`` when a
    crop has nothing to crop to."""
    height, width = alpha.shape[-2:]
    layout = finishing.layout
    subject = subject_box_on_device(alpha) if layout.crop else Box(0, 0, width, height)
    if subject.empty:
        raise NoSubject("no subject was found in the photo: there is nothing to crop to")
    where = plan(width, height, subject, layout)
    mask = place(alpha, where)
    placed = {name: place(colour, where, smooth[name]) for name, colour in colours.items()}
    if not finishing.composites:
        return Finished(placed, mask, mask)
    behind, opacity = _background(image, where, finishing, background)
    finished, out_alpha = {}, mask + (1 - mask) * opacity
    for name, colour in placed.items():
        finished[name], out_alpha = composite(colour, mask, behind, opacity)
    return Finished(finished, out_alpha, mask)


def _background(
    image: torch.Tensor, where: Plan, finishing: Finishing, uploaded: torch.Tensor | None
) -> tuple[torch.Tensor, float]:
    """The background in linear light (3×H×W on the canvas, or 3×1×1 for a colour) and its
    opacity."""
    bg = finishing.background
    if bg.kind == "color":
        rgb = torch.tensor(bg.rgba[:3], dtype=image.dtype, device=image.device) / 255
        return srgb_to_linear(rgb).view(3, 1, 1), bg.rgba[3] / 255
    if bg.kind == "blur":
        height, width = image.shape[-2:]
        # Blurred in linear light, as light itself would be out of focus.
        blurred = gaussian_blur(srgb_to_linear(image), blur_sigma(width, height, bg.strength))
        return fill(blurred, where), 1.0
    if bg.kind == "image" and uploaded is not None:
        picture = uploaded.to(image.device, image.dtype) / 255
        return srgb_to_linear(cover(picture, where.canvas)), 1.0
    raise ValueError(f"background {bg.kind!r} has nothing to draw")
