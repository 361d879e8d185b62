"""Phone-sized test photos made from scikit-image's bundled ones (no network needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Bundled colour photos with a subject, cycled through for series of distinct photos.
SUBJECTS = ("coffee", "astronaut", "chelsea", "rocket")


def phone_jpeg(
    name: str = "coffee",
    size: tuple[int, int] = (4032, 3024),
    quality: int = 90,
    seed: int | None = None,
    orientation: int = 1,
) -> bytes:
    """A 12 MP JPEG like an iPhone upload (~2 MB), upscaled from a bundled photo.

    ``seed`` adds faint sensor-like noise, so photos made with different seeds are different
    uploads (the result cache never answers one for another). ``orientation`` 6 stores the
    photo turned a quarter with EXIF saying how to turn it back, as a phone held upright does.
    """
    from skimage import data

    img = (
        Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    )
    if seed is not None:
        noise = np.random.default_rng(seed).integers(-7, 8, (size[1], size[0], 3), np.int16)
        img = Image.fromarray((np.asarray(img, np.int16) + noise).clip(0, 255).astype(np.uint8))
    extra = {}
    if orientation == 6:
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90° clockwise to view"
        extra["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, **extra)
    return out.getvalue()


def distinct_phone_jpegs(count: int, start: int = 0) -> list[bytes]:
    """``count`` different 12 MP uploads; every third one stored turned, with EXIF rotation."""
    return [
        phone_jpeg(SUBJECTS[i % len(SUBJECTS)], seed=i, orientation=6 if i % 3 == 2 else 1)
        for i in range(start, start + count)
    ]
