"""Fast PNG writers, chosen by measurement (``bench/encoders.py``; bench/RESULTS.md, issue 14):
fpng for RGBA, libvips (pyvips with its bundled library) for the grey mask and 1-bit ink.

Both write plain PNGs every decoder reads, pixel for pixel what they were given. fpng writes
no colour profile, so the photo's goes in afterwards as an ``iCCP`` chunk (``add_icc_profile``),
as Pillow writes it.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(PNG_SIGNATURE) + 4 + 4 + 13 + 4  # length, type, 13 bytes of header, CRC


def rgba(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """H×W×4 uint8 as an RGBA PNG (fpng), with ``icc_profile`` when given."""
    import fpng

    png = fpng.from_ndarray(np.ascontiguousarray(pixels))
    return add_icc_profile(png, icc_profile) if icc_profile else png


def grey(pixels: np.ndarray) -> bytes:
    """H×W uint8 as an 8-bit grey PNG (libvips, zlib level 1)."""
    return bytes(_vips_image(pixels).pngsave_buffer(compression=1))


def bilevel(pixels: np.ndarray) -> bytes:
    """H×W uint8 of 0 and 255 as a 1-bit grey PNG (libvips, zlib level 1)."""
    return bytes(_vips_image(pixels).pngsave_buffer(compression=1, bitdepth=1))


def add_icc_profile(png: bytes, icc_profile: bytes) -> bytes:
    """Put an ICC profile (an ``iCCP`` chunk, deflated) into PNG bytes made without one,
    right after the header, where the PNG specification wants it (before PLTE and IDAT)."""
    if png[: len(PNG_SIGNATURE)] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    data = b"ICC Profile\x00\x00" + zlib.compress(icc_profile)
    chunk = struct.pack(">I", len(data)) + b"iCCP" + data
    chunk += struct.pack(">I", zlib.crc32(b"iCCP" + data))
    return png[:_IHDR_END] + chunk + png[_IHDR_END:]


def _vips_image(pixels: np.ndarray) -> Any:
    return _vips().Image.new_from_array(np.ascontiguousarray(pixels))


@functools.cache
def _vips() -> Any:
    import pyvips

    # The worker encodes on its own thread pool: one thread per encode inside libvips, and no
    # operation cache holding images of finished jobs.
    pyvips.vips_lib.vips_concurrency_set(1)
    pyvips.cache_set_max(0)
    return pyvips
