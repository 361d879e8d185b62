"""Hostile and odd uploads, generated (no binaries in the repository).

``refused()`` are answered at submit with a coded 4xx; ``accepted()`` are legitimate but
unusual photos that must be processed: each has the upright (width, height) its outputs
must have at ``max_size=64``. Animated WebP is processed as its first frame; GIF (animated
or not) is not a supported type and is refused with 415.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tests.test_imageio import png_header_only


@dataclass(frozen=True)
class Case:
    name: str
    image: bytes | None  # the multipart ``image`` part; None sends none
    status: int
    code: str | None = None  # the error code, None when the upload is accepted
    filename: str = "photo.jpg"
    part_type: str | None = None  # the part's own Content-Type
    form: dict[str, str] = field(default_factory=dict)
    upright: tuple[int, int] | None = None  # accepted: the outputs' (width, height)
    says: str = ""  # refused: words the message must hold


def _halves(width: int = 48, height: int = 32) -> np.ndarray:
    """Dark left half, light right half, so a wrong orientation shows."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (40, 60, 200)
    arr[:, width // 2 :] = (230, 200, 40)
    return arr


def _save(img: Image.Image, fmt: str, orientation: int = 1, **kw: object) -> bytes:
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16_rgb(width: int = 40, height: int = 30) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow reads it, but does not write one)."""
    row = np.zeros((width, 3), ">u2")
    row[: width // 2] = (65535, 32768, 0)
    raw = b"".join(b"\x00" + row.tobytes() for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A well-formed PNG whose compressed pixels are garbage: it passes every check at
    submit and fails to decode on the worker."""
    data = _save(Image.fromarray(_halves()), "PNG")
    out, i = bytearray(data[:8]), 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + length]
        out += _chunk(kind, b"\x78\x9c" + bytes(range(200)) if kind == b"IDAT" else body)
        i += 12 + length
    return bytes(out)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims ``width``×``height``."""
    data = bytearray(_save(Image.fromarray(_halves()), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bomb() -> bytes:
    """A real, decodable 11000×10000 PNG (110 MP) that compresses to a few kilobytes."""
    return _save(Image.new("1", (11_000, 10_000)), "PNG", optimize=True)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (48, 32), c) for c in ((220, 30, 30), (30, 30, 220))]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **extra)


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photo.jpg", _save(Image.fromarray(_halves()), "JPEG"))
    return out.getvalue()


def refused() -> list[Case]:
    photo = _save(Image.fromarray(_halves(256, 192)), "JPEG", quality=90)
    png = _save(Image.fromarray(_halves(256, 192)), "PNG")
    webp = _save(Image.fromarray(_halves(256, 192)), "WEBP")
    tiny = _save(Image.fromarray(_halves()), "JPEG")
    html = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
    return [
        Case("no_image_field", None, 400, "missing_image"),
        Case("zero_bytes", b"", 400, "empty_image"),
        Case("truncated_jpeg", photo[: len(photo) * 2 // 3], 422, "invalid_image",
             says="cut short"),
        Case("truncated_png", png[: len(png) * 2 // 3], 422, "invalid_image", "a.png",
             says="cut short"),
        Case("truncated_webp", webp[: len(webp) // 2], 422, "invalid_image", "a.webp"),
        Case("random_bytes", random.Random(7).randbytes(4096), 415, "unsupported_media_type"),
        Case("html_as_jpg", html, 415, "unsupported_media_type", part_type="image/jpeg"),
        Case("svg_as_jpg", svg, 415, "unsupported_media_type", part_type="image/jpeg"),
        Case("pdf_as_jpg", pdf, 415, "unsupported_media_type"),
        Case("zip_as_jpg", _zip(), 415, "unsupported_media_type"),
        Case("animated_gif", animated("GIF"), 415, "unsupported_media_type", "a.gif"),
        Case("png_claiming_100000x100000", png_header_only(100_000, 100_000), 422,
             "image_too_large"),
        Case("jpeg_claiming_65500x65500", jpeg_claiming(65_500, 65_500), 422,
             "image_too_large"),
        Case("png_bomb_110_megapixels", png_bomb(), 422, "image_too_large", "bomb.png"),
        Case("one_by_one", _save(Image.new("RGB", (1, 1)), "PNG"), 422, "image_too_small"),
        Case("jpeg_header_only", b"\xff\xd8\xff\xe0garbage", 422, "invalid_image"),
        Case("unknown_effect", tiny, 400, "invalid_effects", form={"effects": "color,sparkle"}),
        Case("max_size_zero", tiny, 400, "invalid_max_size", form={"max_size": "0"}),
        Case("max_size_negative", tiny, 400, "invalid_max_size", form={"max_size": "-64"}),
        Case("max_size_huge", tiny, 400, "invalid_max_size", form={"max_size": "9" * 30}),
        Case("max_size_absurd", tiny, 400, "invalid_max_size", form={"max_size": "9" * 5000}),
        Case("max_size_text", tiny, 400, "invalid_max_size", form={"max_size": "big"}),
        Case("max_size_float", tiny, 400, "invalid_max_size", form={"max_size": "64.5"}),
        Case("max_size_nan", tiny, 400, "invalid_max_size", form={"max_size": "NaN"}),
        Case("format_gif", tiny, 400, "invalid_format", form={"format": "gif"}),
    ]  # fmt: skip


ODD_FORM = {"max_size": "64", "effects": "color"}


def _ok(name: str, image: bytes, upright: tuple[int, int], **kw: str | None) -> Case:
    return Case(name, image, 202, form=ODD_FORM, upright=upright, **kw)  # type: ignore[arg-type]


def accepted() -> list[Case]:
    halves = Image.fromarray(_halves())  # 48×32 stored; orientations 5 to 8 make it 32×48
    gray16 = Image.fromarray(np.asarray(halves.convert("L"), np.uint16) * 257)
    wide, tall = (48, 32), (32, 48)
    return [
        _ok("png_16bit_rgb_with_a_hostile_name_and_part_type", png16_rgb(), (40, 30),
            filename="../../etc/passwd\x00.jpg", part_type="text/html"),
        _ok("cmyk_jpeg_orientation_2", _save(halves.convert("CMYK"), "JPEG", 2), wide),
        _ok("gray_jpeg_orientation_3", _save(halves.convert("L"), "JPEG", 3), wide),
        _ok("palette_png_transparent_orientation_4",
            _save(halves.quantize(4), "PNG", 4, transparency=0), wide),
        _ok("png_16bit_gray_orientation_5", _save(gray16, "PNG", 5), tall),
        _ok("progressive_jpeg_orientation_6", _save(halves, "JPEG", 6, progressive=True), tall),
        _ok("webp_orientation_7", _save(halves, "WEBP", 7), tall),
        _ok("jpeg_orientation_8_16px", _save(halves.resize((24, 16)), "JPEG", 8), (16, 24)),
        _ok("heic_rotated", _heic_rotated(halves), tall),
        _ok("animated_webp_first_frame", animated("WEBP"), wide),
    ]  # fmt: skip


def _heic_rotated(img: Image.Image) -> bytes:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    return _save(img, "HEIF", 6)
