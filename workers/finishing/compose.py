"""The finishing steps on tensors: placing a layer on the canvas, the backgrounds, and the
composite in linear light. The same code on CPU and CUDA.

Compositing is done in linear light: averaging sRGB values (what "normal" blending in most
editors does) darkens every soft edge between a light and a dark layer — hair over a white
background shows a grey fringe. The colours are converted to linear, mixed by alpha, and
converted back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workers.effects.filters import box_blur, grow, shrink
from workers.finishing.geometry import Plan


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.pow(1 / 2.4) - 0.055)


def resize(layer: torch.Tensor, size: tuple[int, int], smooth: bool) -> torch.Tensor:
    """C×H×W float to ``size`` (H, W): antialiased bilinear, or nearest for layers whose
    values must stay exact (a poster's colours, 1-bit ink)."""
    if tuple(layer.shape[-2:]) == size:
        return layer
    if not smooth:
        return F.interpolate(layer[None], size=size, mode="nearest-exact")[0]
    out = F.interpolate(
        layer[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return out[0]


def place(layer: torch.Tensor, plan: Plan, smooth: bool = True) -> torch.Tensor:
    """The C×H×W layer on the plan's canvas: its source region scaled onto the target box,
    zeros (transparent) everywhere else, past the photo's edges included."""
    height, width = layer.shape[-2:]
    if plan.identity(width, height):
        return layer
    src, tgt = plan.source, plan.target
    canvas_w, canvas_h = plan.canvas
    canvas = layer.new_zeros((layer.shape[0], canvas_h, canvas_w))
    x0, x1 = max(src.left, 0), min(src.right, width)
    y0, y1 = max(src.top, 0), min(src.bottom, height)
    if x0 >= x1 or y0 >= y1:
        return canvas
    sx, sy = tgt.width / src.width, tgt.height / src.height
    tx0 = tgt.left + round((x0 - src.left) * sx)
    tx1 = min(canvas_w, tgt.left + round((x1 - src.left) * sx))
    ty0 = tgt.top + round((y0 - src.top) * sy)
    ty1 = min(canvas_h, tgt.top + round((y1 - src.top) * sy))
    if tx0 >= tx1 or ty0 >= ty1:
        return canvas
    canvas[:, ty0:ty1, tx0:tx1] = resize(layer[:, y0:y1, x0:x1], (ty1 - ty0, tx1 - tx0), smooth)
    return canvas


def fill(layer: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The C×H×W layer over the whole canvas under the plan's scaling, its edge pixels
    repeated where the canvas reaches past the photo (a blurred photo behind a margin)."""
    height, width = layer.shape[-2:]
    if plan.identity(width, height):
        return layer
    left, top, w, h = plan.canvas_source()
    x0, y0 = math.floor(left), math.floor(top)
    x1, y1 = max(x0 + 1, math.ceil(left + w)), max(y0 + 1, math.ceil(top + h))
    pads = (max(0, -x0), max(0, x1 - width), max(0, -y0), max(0, y1 - height))
    padded = F.pad(layer[None], pads, mode="replicate")[0] if any(pads) else layer
    region = padded[:, y0 + pads[2] : y1 + pads[2], x0 + pads[0] : x1 + pads[0]]
    canvas_w, canvas_h = plan.canvas
    return resize(region, (canvas_h, canvas_w), True)


def cover(image: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor:
    """A C×h×w image scaled to cover the (width, height) canvas and centred, the overflow
    cut off (CSS ``background-size: cover``)."""
    height, width = image.shape[-2:]
    canvas_w, canvas_h = canvas
    scale = max(canvas_w / width, canvas_h / height)
    crop_w = min(width, max(1, round(canvas_w / scale)))
    crop_h = min(height, max(1, round(canvas_h / scale)))
    x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
    return resize(image[:, y0 : y0 + crop_h, x0 : x0 + crop_w], (canvas_h, canvas_w), True)


def blur_sigma(width: int, height: int, strength: int) -> float:
    """The Gaussian sigma of ``blur_strength``: strength/50 % of the long edge (40 → 16 px at
    2048 px), so a strength looks the same at every output size."""
    return max(width, height) * strength / 5000


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A C×H×W image blurred by about ``sigma``: three box blurs (close to a Gaussian),
    taken on an image shrunk so that the radius stays near 4 px, then grown back — a blur
    this wide has no detail to lose and costs the same at any strength."""
    factor = max(1, int(sigma // 4))
    small = shrink(image[None], factor)
    # Three boxes of width w have the variance of a Gaussian of sigma when w² = 4σ² + 1.
    radius = max(1, round((math.sqrt(4 * (sigma / factor) ** 2 + 1) - 1) / 2))
    for _ in range(3):
        small = box_blur(small, radius)
    return grow(small, image.shape[-2:])[0]


def composite(
    colour: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor, background_alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``colour`` (C×H×W straight sRGB in [0, 1], C = 1 or 3) with ``alpha`` (1×H×W) over a
    background in linear light (3×H×W, or 3×1×1 for a flat colour) whose opacity is
    ``background_alpha``: the sRGB colour and the alpha of the result ("over")."""
    under = (1 - alpha) * background_alpha
    out_alpha = alpha + under
    mixed = srgb_to_linear(colour.expand(3, -1, -1)) * alpha + background * under
    return linear_to_srgb(mixed / out_alpha.clamp(min=1e-6)), out_alpha
