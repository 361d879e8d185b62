"""Image bytes in and out: decoding and encoding. Sniffing and header probing are the upload
contract's (``contract.formats``), shared with the API.

Decoding applies the EXIF orientation, reads JPEGs at the smallest DCT scale that still covers
both the outputs and the model's input (Pillow's draft mode), and keeps an RGB ICC profile (an
iPhone's Display P3) for the outputs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from contract.formats import ImageInfo, InvalidImage, open_image, probe
from workers import png


@dataclass
class DecodedImage:
    rgb: np.ndarray  # H×W×3 uint8, upright, at most the requested size on its long edge
    icc_profile: bytes | None  # an RGB profile; others (CMYK, grey) do not fit RGB outputs
    source: ImageInfo
    # A larger copy for the model, when ``rgb`` is smaller than the model's input on a side
    # and the photo has more pixels; None when ``rgb`` serves the model as well.
    model_rgb: np.ndarray | None = None
    read_size: tuple[int, int] = (0, 0)  # what the decoder read (a JPEG: after DCT scaling)


def header_icc_profile(data: bytes) -> bytes | None:
    """The photo's RGB ICC profile, read from its header (no pixel decode)."""
    with open_image(data) as img:
        return _rgb_profile(img.info.get("icc_profile"))


def header_orientation(data: bytes) -> int:
    """The EXIF orientation (1–8) from the header (no pixel decode); 1 where there is none."""
    with open_image(data) as img:
        value = img.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) down, aspect kept, so the long edge is at most ``max_side``."""
    long_edge = max(width, height)
    if long_edge <= max_side:
        return width, height
    scale = max_side / long_edge
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode(data: bytes, max_side: int, model_side: int = 0) -> DecodedImage:
    """Decode to upright RGB no larger than ``max_side`` on its long edge.

    ``model_side`` is the model's input side: the model resizes each image to a square of it,
    so when the outputs are smaller than that on a side, a copy at least that large (as far as
    the photo goes) is kept for the model in ``model_rgb``. A JPEG is read at the smallest DCT
    scale (1/8, 1/4, 1/2 or 1) that still covers both.
    """
    info = probe(data)
    img = open_image(data)
    try:
        icc = _rgb_profile(img.info.get("icc_profile"))
        orientation = img.getexif().get(0x0112, 1) if info.format != "heic" else 1
        if info.format == "jpeg":
            # Sizes in stored (pre-rotation) orientation; the model's square needs no turning.
            out_w, out_h = fit_within(info.width, info.height, max_side)
            need_w = max(out_w, min(info.width, model_side))
            need_h = max(out_h, min(info.height, model_side))
            img.draft("RGB", (need_w, need_h))
        img.load()
        read_size = img.size
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode != "RGB":
            img = _to_rgb(img)
        size = fit_within(img.width, img.height, max_side)
        out = (
            img
            if img.size == size
            else img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        )
        model = _model_source(img, size, model_side)
        return DecodedImage(np.array(out), icc, info, model, read_size)
    except InvalidImage:
        raise
    except Exception as exc:
        raise InvalidImage(f"cannot decode the {info.format} image: {exc}") from exc
    finally:
        img.close()


def _model_source(img: Image.Image, out_size: tuple[int, int], side: int) -> np.ndarray | None:
    """``img`` for the model when the outputs (``out_size``) are under ``side`` on a side and
    ``img`` is larger; box-reduced by a whole factor while both sides stay at least ``side``."""
    if side <= 0 or min(out_size) >= side or img.size == out_size:
        return None
    factor = min(img.size) // side
    return np.array(img.reduce(factor) if factor >= 2 else img)


def _rgb_profile(icc: bytes | None) -> bytes | None:
    """The profile if it describes RGB (header bytes 16–19), else None: a CMYK or grey
    profile would mislabel the RGB outputs."""
    return icc if icc and icc[16:20] == b"RGB " else None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become white rather than whatever colour they hid.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


JPEG_QUALITY = 90
WEBP_QUALITY = 90
PNG_LEVEL = 1  # zlib's fastest real compression: 3x to 6x faster than the default level 6

# Codec → (content type, file extension).
CODECS: dict[str, tuple[str, str]] = {
    "webp": ("image/webp", "webp"),  # lossy colour, lossless alpha
    "webp-lossless": ("image/webp", "webp"),
    "png": ("image/png", "png"),
    "jpeg": ("image/jpeg", "jpg"),
    "png-palette": ("image/png", "png"),  # indexed colour
    "png-bilevel": ("image/png", "png"),  # 1 bit per pixel
}


def encode_image(
    colour: np.ndarray,
    alpha: np.ndarray | None,
    codec: str,
    icc_profile: bytes | None = None,
    palette: np.ndarray | None = None,
) -> bytes:
    """Encode H×W×C uint8 colour (C = 3, or 1 for grey) with an optional H×W uint8 alpha.

    ``png-palette`` maps the colours onto ``palette`` (K×3 uint8, exact matches expected);
    ``png-bilevel`` keeps grey as 1 bit (0 or 255 expected). The ICC profile, an RGB
    profile, goes only on colour outputs.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    grey = colour.shape[2] == 1
    if codec == "png" and alpha is not None and not grey:
        return png.rgba(np.dstack((colour, alpha)), icc_profile)  # fpng: 8x less CPU than Pillow
    pixels = colour[..., 0] if grey else colour
    if alpha is not None:
        img = Image.fromarray(np.dstack((pixels, alpha)), "LA" if grey else "RGBA")
    else:
        img = Image.fromarray(pixels, "L" if grey else "RGB")
    extra = {"icc_profile": icc_profile} if icc_profile and not grey else {}
    out = io.BytesIO()
    if codec == "webp":
        img.save(out, "WEBP", quality=WEBP_QUALITY, method=0, exact=False, **extra)
    elif codec == "webp-lossless":
        # method 0 / quality 0: the fastest lossless effort, still smaller than PNG for flat art.
        img.save(out, "WEBP", lossless=True, quality=0, method=0, exact=False, **extra)
    elif codec == "png":
        img.save(out, "PNG", compress_level=PNG_LEVEL, **extra)
    elif codec == "jpeg":
        if alpha is not None:
            raise ValueError("JPEG has no alpha: send the mask on its own")
        img.save(out, "JPEG", quality=JPEG_QUALITY, **extra)
    elif codec == "png-palette":
        if palette is None or alpha is not None or grey:
            raise ValueError("png-palette takes RGB colour and a palette, no alpha")
        index = Image.new("P", (1, 1))
        index.putpalette(palette.astype(np.uint8).tobytes())
        img.quantize(palette=index, dither=Image.Dither.NONE).save(
            out, "PNG", compress_level=PNG_LEVEL, **extra
        )
    else:  # png-bilevel
        if alpha is not None or not grey:
            raise ValueError("png-bilevel takes grey, no alpha")
        return png.bilevel(pixels)
    return out.getvalue()


def add_jpeg_icc_profile(jpeg: bytes, icc_profile: bytes) -> bytes:
    """Put an ICC profile into JPEG bytes made without one (APP2 ICC_PROFILE segments).

    For JPEGs encoded elsewhere (nvJPEG on the GPU): the profile goes right after the start
    marker, split into numbered segments as the ICC specification (annex B.4) lays out.
    """
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    chunk = 65519  # 65535 − 2 (length) − 12 ("ICC_PROFILE\0") − 2 (sequence, count)
    pieces = [icc_profile[i : i + chunk] for i in range(0, len(icc_profile), chunk)]
    if len(pieces) > 255:
        raise ValueError("ICC profile too large for JPEG")
    segments = b"".join(
        b"\xff\xe2"
        + (len(piece) + 16).to_bytes(2, "big")
        + b"ICC_PROFILE\x00"
        + bytes((number, len(pieces)))
        + piece
        for number, piece in enumerate(pieces, start=1)
    )
    return jpeg[:2] + segments + jpeg[2:]


def encode_mask(mask: np.ndarray) -> bytes:
    """Encode an H×W uint8 mask as greyscale PNG (libvips: 5-7x less CPU than Pillow)."""
    return png.grey(mask)
