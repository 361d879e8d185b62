"""An upload's real type from its magic bytes, and its stored size from the header alone.

Probing never decodes pixels, so a decompression bomb is refused from its header.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


class InvalidImage(ValueError):
    """The bytes are not a decodable image of a supported type."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # jpeg | png | webp | heic
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def _register_heif() -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()


def sniff(data: bytes) -> str | None:
    """The real type from magic bytes: ``jpeg``, ``png``, ``webp``, ``heic`` or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "heic"
    return None


def open_image(data: bytes) -> Image.Image:
    """The image, opened lazily: Pillow has read its header, no pixels yet."""
    fmt = sniff(data)
    if fmt is None:
        raise InvalidImage("not a JPEG, PNG, WebP or HEIC image")
    if fmt == "heic":
        _register_heif()
    # The pixel-count limit is ours (checked on the header by the caller), not Pillow's.
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(io.BytesIO(data), formats=None)
    except Exception as exc:
        raise InvalidImage(f"cannot read the {fmt} header: {exc}") from exc


def probe(data: bytes) -> ImageInfo:
    """Type and stored size from the header alone (no pixel decode)."""
    fmt = sniff(data)
    with open_image(data) as img:
        width, height = img.size
    assert fmt is not None
    return ImageInfo(fmt, width, height)
