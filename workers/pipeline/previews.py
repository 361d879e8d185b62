"""Previews: each effect small (``PREVIEW_SIDE`` on the long edge), as a lossy WebP with its
alpha, whatever the job's format, handed over before the job's full outputs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PREVIEW_SIDE = 256  # long edge of a preview, px
PREVIEW_CODEC = "webp"  # lossy colour, exact alpha: every effect, whatever the job's format


def shrink(
    alpha: torch.Tensor, colours: dict[str, torch.Tensor], size: tuple[int, int]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """B×1×H×W alpha and B×C×H×W colours in [0, 1] at ``size`` (width, height), where they
    are: the alpha as B×h×w uint8, each colour as B×h×w×C uint8. Colours are averaged
    premultiplied, so no halo comes in from under the alpha."""
    width, height = size
    small_alpha = F.interpolate(alpha, size=(height, width), mode="area")
    small = {}
    for name, colour in colours.items():
        premultiplied = F.interpolate(colour * alpha, size=(height, width), mode="area")
        straight = premultiplied / small_alpha.clamp_min(1e-6)
        small[name] = to_uint8(straight).permute(0, 2, 3, 1)
    return to_uint8(small_alpha)[:, 0], small


def shrink_on_host(colour: np.ndarray, alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One image's H×W×C uint8 colour under its H×W uint8 alpha, shrunk as ``shrink`` does."""
    as_float = torch.from_numpy(colour).permute(2, 0, 1)[None].float() / 255
    _, small = shrink(torch.from_numpy(alpha)[None, None].float() / 255, {"c": as_float}, size)
    return small["c"][0].numpy()


def to_uint8(t: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] → uint8, on its device."""
    return t.clamp(0, 1).mul_(255).round_().to(torch.uint8)
