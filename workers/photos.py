"""Real photos for the quality gate and INT8 calibration: scikit-image's bundled ones (offline).

The two sets share no photo. The gate's are photos with a subject to cut out; calibration
sees other real photos (the right view of the stereo motorcycle, a cell slide, a retina,
the Hubble deep field, the moon, grass, a printed page, a colour wheel) so the INT8 ranges are
not fitted to the very photos it is judged on.
"""

from __future__ import annotations

import numpy as np

GATE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "camera",
    "clock",
    "coins",
)
CALIBRATION_PHOTOS = (
    "motorcycle_right",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "moon",
    "grass",
    "page",
    "colorwheel",
)
# More photos that load offline, none of them the gate's, for calibration variants
# (bench/int8_variants.py): textures, text, a logo, a silhouette, a cell, a pattern.
EXTRA_CALIBRATION_PHOTOS = (
    "brick",
    "gravel",
    "cell",
    "text",
    "logo",
    "horse",
    "checkerboard",
    "microaneurysms",
)


def load_photo(name: str) -> np.ndarray:
    """H×W×3 uint8 RGB (grey photos are repeated over the three channels)."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        image = getattr(data, name)()
    image = np.asarray(image)
    if image.dtype == bool:  # a silhouette (horse)
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def load_photos(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: load_photo(name) for name in names}
