"""Which encoding each effect gets for a requested output format, and the device JPEG path.

The request's ``format`` sets the family; each effect then gets the codec that suits it:

| format     | color, enhancedblackwhite          | popart (5 colours) | dithering (1 bit)   |
|------------|------------------------------------|--------------------|---------------------|
| `webp`     | WebP (lossy colour, exact alpha)   | WebP lossless      | WebP lossless       |
| `png`      | PNG (RGBA; grey+alpha for b/w)     | PNG (RGBA)         | PNG (grey+alpha)    |
| `jpg+mask` | JPEG (RGB; grey for b/w)           | palette PNG        | 1-bit PNG           |

Lossy codecs would smear 1-bit ink to grey and add colours to a poster, so those two always
stay lossless. ``jpg+mask`` carries no alpha in the effect files: the one shared mask (PNG,
the ``mask`` output) is the alpha of every effect, as remove.bg's zip format does it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from workers.effects import EFFECTS, Effect
from workers.imageio import encode_image

MASK_CODEC = "png"

# Effect kind → requested format → codec.
_CODECS = {
    "tone": {"webp": "webp", "png": "png", "jpg+mask": "jpeg"},
    "palette": {"webp": "webp-lossless", "png": "png", "jpg+mask": "png-palette"},
    "bilevel": {"webp": "webp-lossless", "png": "png", "jpg+mask": "png-bilevel"},
}


def codec_for(effect: Effect, fmt: str) -> str:
    """The codec for one effect's output when the request asked for ``fmt``."""
    table = _CODECS[effect.kind]
    if fmt not in table:
        raise ValueError(f"unknown output format {fmt!r}")
    return table[fmt]


def carries_alpha(fmt: str) -> bool:
    """Whether each effect file holds its alpha (else the shared mask is the alpha)."""
    return fmt != "jpg+mask"


def encode_effect(
    name: str, colour: np.ndarray, alpha: np.ndarray, fmt: str, icc_profile: bytes | None = None
) -> bytes:
    """One effect's file: H×W×C uint8 colour and the H×W uint8 alpha, as ``fmt`` wants it."""
    effect = EFFECTS[name]
    codec = codec_for(effect, fmt)
    palette = np.round(np.array(effect.palette) * 255).astype(np.uint8) if effect.palette else None
    if not carries_alpha(fmt):
        return encode_image(colour, None, codec, icc_profile, palette)
    # Colour under alpha 0 is invisible: zero it, and lossless files get smaller.
    return encode_image(colour * (alpha > 0)[..., None], alpha, codec, icc_profile, palette)


# Effect kind → requested format → codec, for an effect composited on a background: its
# soft edges now mix in the background's colours, so a poster or 1-bit ink no longer fits a
# palette or one bit, and a grey effect turns colour. Lossless stays lossless.
_COMPOSITED_CODECS = {
    "tone": {"webp": "webp", "png": "png", "jpg+mask": "jpeg"},
    "palette": {"webp": "webp-lossless", "png": "png", "jpg+mask": "png"},
    "bilevel": {"webp": "webp-lossless", "png": "png", "jpg+mask": "png"},
}


def finished_codec(effect: Effect, fmt: str, composited: bool) -> str:
    """The codec of an effect's output, put on a background (``composited``) or not."""
    if not composited:
        return codec_for(effect, fmt)
    return _COMPOSITED_CODECS[effect.kind][fmt]


def encode_finished(
    name: str,
    colour: np.ndarray,
    alpha: np.ndarray,
    fmt: str,
    icc_profile: bytes | None,
    composited: bool,
) -> bytes:
    """One effect's file from its own canvas. Composited on a background, an opaque result
    (every alpha 255) is written without an alpha channel: the same pixels, a smaller file.
    JPEG is used only where ``jpg+mask`` asks for it, never in place of a ``png``/``webp``
    request (which may be asked for because it is lossless or to keep the alpha)."""
    if not composited:
        return encode_effect(name, colour, alpha, fmt, icc_profile)
    opaque = bool(alpha.min() == 255)
    keep_alpha = carries_alpha(fmt) and not opaque
    codec = finished_codec(EFFECTS[name], fmt, True)
    return encode_image(colour, alpha if keep_alpha else None, codec, icc_profile)


DeviceJpegEncoder = Callable[[Sequence[torch.Tensor], int], list[bytes]]


def device_jpeg_encoder(device: torch.device) -> DeviceJpegEncoder | None:
    """A batched JPEG encoder on ``device`` when there is one, else None (Pillow on CPU).

    On CUDA, torchvision's ``encode_jpeg`` (nvJPEG) encodes a list of 3×H×W uint8 tensors in
    one call, without copying the pixels to the host. Checked on an H200 (2026-11-27,
    ``tests/test_gpu.py``); PyPI's torchvision does not import beside the CPU torch on the CI
    machines, so there the fallback is what runs and is tested.
    """
    if device.type != "cuda":
        return None
    try:
        from torchvision.io import encode_jpeg
    except Exception:  # not installed, or built against another torch
        return None

    def encode(images: Sequence[torch.Tensor], quality: int) -> list[bytes]:
        # nvJPEG takes 3 channels only: grey goes as grey RGB.
        batch = [img.expand(3, -1, -1).contiguous() if img.shape[0] == 1 else img for img in images]
        return [bytes(data.cpu().numpy()) for data in encode_jpeg(batch, quality=quality)]

    return encode
