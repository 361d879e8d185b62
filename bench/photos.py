"""Phone-sized test photos made from scikit-image's bundled ones (no network needed)."""

from __future__ import annotations

import io

from PIL import Image


def phone_jpeg(
    name: str = "coffee", size: tuple[int, int] = (4032, 3024), quality: int = 90
) -> bytes:
    """A 12 MP JPEG like an iPhone upload (~2 MB), upscaled from a bundled photo."""
    from skimage import data

    img = (
        Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()
