"""The fast PNG writers the worker adopted (fpng for RGBA, libvips for the mask and 1-bit ink):
what they write decodes back to the very pixels, and colour outputs keep the photo's profile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.icc import display_p3_profile
from workers import png
from workers.imageio import encode_image, encode_mask

SIZES = [(37, 53), (1, 200), (200, 1), (480, 640)]


def _read(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("size", SIZES)
def test_rgba_pngs_decode_to_the_same_pixels_and_keep_the_profile(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size, dtype=np.uint8)
    p3 = display_p3_profile()
    img = _read(encode_image(colour, alpha, "png", p3))
    assert img.format == "PNG" and img.mode == "RGBA"
    assert np.array_equal(np.asarray(img), np.dstack((colour, alpha)))
    assert img.info.get("icc_profile") == p3
    assert "icc_profile" not in _read(png.rgba(np.dstack((colour, alpha)))).info


@pytest.mark.parametrize("size", SIZES)
def test_masks_and_one_bit_ink_decode_to_the_same_pixels(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    mask = rng.integers(0, 256, size, dtype=np.uint8)
    mask[: size[0] // 2] = 255  # flat runs, as a real mask has
    img = _read(encode_mask(mask))
    assert img.mode == "L" and np.array_equal(np.asarray(img), mask)
    ink = (rng.integers(0, 2, (*size, 1), dtype=np.uint8) * 255).astype(np.uint8)
    img = _read(encode_image(ink, None, "png-bilevel"))
    assert img.mode == "1"
    assert np.array_equal(np.asarray(img.convert("L")), ink[..., 0])


def test_a_profile_goes_into_a_png_only() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        png.add_icc_profile(b"\xff\xd8\xff not a png", display_p3_profile())
