"""Is an upload cut short? A walk over the container's structure, without decoding pixels.

A JPEG must reach its end-of-image marker after its first scan (a marker inside an EXIF
thumbnail comes before the scan, so it does not count); a PNG must reach its IEND chunk.
Pillow already refuses to open a cut WebP, and HEIC is left to its decoder.
"""

from __future__ import annotations

import struct

_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field
_SOS, _EOI = 0xDA, 0xD9


def _jpeg(data: bytes) -> str | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "its markers are broken before the image data"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker == _EOI:
            return "it ends before its image data (the upload was cut short)"
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == _SOS:
            if data.find(b"\xff\xd9", i + 2 + length) == -1:
                return "it has no end-of-image marker (the upload was cut short)"
            return None
        i += 2 + length
    return "it ends before its image data (the upload was cut short)"


def _png(data: bytes) -> str | None:
    i = 8
    while i + 12 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        if data[i + 4 : i + 8] == b"IEND":
            return None
        i += 12 + length
    return "it has no IEND chunk (the upload was cut short)"


_CHECKS = {"jpeg": _jpeg, "png": _png}


def truncated(data: bytes, fmt: str) -> str | None:
    """Why ``data`` (of the sniffed type ``fmt``) looks cut short, or None."""
    check = _CHECKS.get(fmt)
    return check(data) if check else None
