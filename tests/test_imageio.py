"""Sniffing, header-only probing (the upload contract) and decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from contract.formats import InvalidImage, probe, sniff
from tests.icc import display_p3_profile
from workers.imageio import (
    CODECS,
    add_jpeg_icc_profile,
    decode,
    encode_image,
    encode_mask,
    fit_within,
    header_orientation,
)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return Image.fromarray(np.stack([x, x[::-1, ::-1], np.full_like(x, 90)], -1), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height`` but which carries almost no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


@pytest.mark.parametrize(("fmt", "expected"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
def test_sniff_and_probe(fmt: str, expected: str) -> None:
    data = _encode(_gradient(), fmt)
    assert sniff(data) == expected
    info = probe(data)
    assert (info.format, info.width, info.height) == (expected, 64, 48)


def test_heic_is_read_upright() -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    data = _encode(_gradient(), "HEIF")
    assert sniff(data) == "heic"
    decoded = decode(data, 2048)
    assert decoded.rgb.shape == (48, 64, 3)


def test_not_an_image() -> None:
    assert sniff(b"<html><body>hi</body></html>") is None
    with pytest.raises(InvalidImage):
        probe(b"GIF89a" + b"\x00" * 20)


def test_bomb_is_measured_from_the_header_alone() -> None:
    info = probe(png_header_only(100_000, 100_000))
    assert (info.width, info.height) == (100_000, 100_000)


def test_truncated_jpeg_fails_to_decode() -> None:
    data = _encode(_gradient(256, 256), "JPEG")
    with pytest.raises(InvalidImage):
        decode(data[: len(data) // 3], 2048)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    # A wide image whose left half is dark: every orientation must come out as exif_transpose says.
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 40:] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = decode(data, 2048).rgb
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2
    assert got.shape[:2] == ((80, 40) if orientation >= 5 else (40, 80))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_on_a_tensor_turns_as_exif_transpose_does(orientation: int) -> None:
    # What the device decoder applies (nvJPEG ignores EXIF): exact against Pillow, on a
    # lossless image with no symmetry, so every flip and turn is told apart.
    import torch
    from PIL import ImageOps

    from workers.device_decode import upright

    arr = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(arr), "PNG", exif=exif.tobytes())
    assert header_orientation(data) == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = upright(torch.from_numpy(arr).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


def test_header_orientation_is_1_without_exif() -> None:
    assert header_orientation(_encode(Image.new("RGB", (4, 4)), "JPEG")) == 1


def test_decode_fits_max_size_and_keeps_aspect() -> None:
    data = _encode(_gradient(1200, 800), "JPEG")
    decoded = decode(data, 600)
    assert decoded.rgb.shape == (400, 600, 3)
    assert fit_within(1200, 800, 2048) == (1200, 800)


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # type: ignore[no-any-return]


def test_icc_profile_survives_to_the_colour_outputs() -> None:
    icc = _srgb_profile()
    data = _encode(_gradient(), "JPEG", icc_profile=icc)
    decoded = decode(data, 2048)
    assert decoded.icc_profile == icc
    alpha = np.full(decoded.rgb.shape[:2], 255, np.uint8)
    for codec in ("webp", "webp-lossless", "png"):
        with Image.open(io.BytesIO(encode_image(decoded.rgb, alpha, codec, icc))) as out:
            assert out.info.get("icc_profile") == icc, codec
    with Image.open(io.BytesIO(encode_image(decoded.rgb, None, "jpeg", icc))) as out:
        assert out.info.get("icc_profile") == icc
    # An RGB profile does not belong on a grey image: it is left off.
    grey = decoded.rgb[..., :1]
    with Image.open(io.BytesIO(encode_image(grey, alpha, "png", icc))) as out:
        assert out.mode == "LA" and "icc_profile" not in out.info


def _soft_alpha(h: int = 48, w: int = 64) -> np.ndarray:
    alpha = np.zeros((h, w), np.uint8)
    alpha[8:40, 10:54] = 255
    alpha[8:40, 9] = 128
    alpha[8:40, 54] = 1
    return alpha


@pytest.mark.parametrize("codec", ["webp", "webp-lossless", "png"])
@pytest.mark.parametrize("channels", [3, 1])
def test_codecs_with_alpha_keep_it_exact(codec: str, channels: int) -> None:
    colour = np.asarray(_gradient())[..., :channels].copy()
    alpha = _soft_alpha()
    data = encode_image(colour, alpha, codec)
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == CODECS[codec][1].upper()
        rgba = np.asarray(out.convert("RGBA"))
    assert np.array_equal(rgba[..., 3], alpha)
    if codec != "webp":  # the lossless ones keep every visible pixel
        visible = alpha > 0
        expected = np.broadcast_to(colour, (*colour.shape[:2], 3))
        assert np.array_equal(rgba[..., :3][visible], expected[visible])


def test_palette_png_is_exact_and_indexed() -> None:
    palette = np.array([[18, 10, 41], [240, 33, 135], [255, 235, 61]], np.uint8)
    index = np.random.default_rng(0).integers(0, 3, (48, 64))
    colour = palette[index]
    with Image.open(io.BytesIO(encode_image(colour, None, "png-palette", palette=palette))) as out:
        assert out.mode == "P"
        assert np.array_equal(np.asarray(out.convert("RGB")), colour)


def test_bilevel_png_is_one_bit() -> None:
    ink = (np.random.default_rng(0).random((48, 64, 1)) > 0.5).astype(np.uint8) * 255
    with Image.open(io.BytesIO(encode_image(ink, None, "png-bilevel"))) as out:
        assert out.mode == "1"
        assert np.array_equal(np.asarray(out.convert("L")), ink[..., 0])


def test_jpeg_refuses_alpha_and_unknown_codecs_are_refused() -> None:
    colour = np.asarray(_gradient())
    with pytest.raises(ValueError, match="alpha"):
        encode_image(colour, _soft_alpha(), "jpeg")
    with pytest.raises(ValueError, match="unknown codec"):
        encode_image(colour, None, "gif")


def test_icc_profile_added_to_a_jpeg_made_without_one() -> None:
    icc = _srgb_profile()
    plain = _encode(_gradient(), "JPEG", quality=90)
    with_icc = add_jpeg_icc_profile(plain, icc)
    with Image.open(io.BytesIO(with_icc)) as out:
        assert out.info.get("icc_profile") == icc
        assert np.array_equal(np.asarray(out), np.asarray(Image.open(io.BytesIO(plain))))
    big = bytes(range(256)) * 300  # 76.8 kB: two segments
    with Image.open(io.BytesIO(add_jpeg_icc_profile(plain, big))) as out:
        assert out.info.get("icc_profile") == big
    with pytest.raises(ValueError, match="JPEG"):
        add_jpeg_icc_profile(b"\x89PNG", icc)


def test_mask_is_a_lossless_grey_png() -> None:
    alpha = _soft_alpha()
    with Image.open(io.BytesIO(encode_mask(alpha))) as out:
        assert out.format == "PNG" and out.mode == "L"
        assert np.array_equal(np.asarray(out), alpha)


@pytest.mark.parametrize(
    ("max_side", "model_side", "read", "out", "model"),
    [
        (2048, 1024, (4000, 3000), (2048, 1536), None),  # the outputs need every pixel
        (1500, 1024, (2000, 1500), (1500, 1125), None),  # 1/2 covers both
        (512, 1024, (2000, 1500), (512, 384), (2000, 1500)),  # the model needs 1/2 alone
        (512, 0, (1000, 750), (512, 384), None),  # no model: 1/4 covers the outputs
        (512, 768, (2000, 1500), (512, 384), (2000, 1500)),  # 1/4 is 750 high: under 768
        (512, 640, (1000, 750), (512, 384), (1000, 750)),  # a smaller model input: 1/4
        (300, 256, (500, 375), (300, 225), (500, 375)),  # 1/8
    ],
)
def test_a_jpeg_is_read_at_the_smallest_scale_covering_outputs_and_model(
    max_side: int,
    model_side: int,
    read: tuple[int, int],
    out: tuple[int, int],
    model: tuple[int, int] | None,
) -> None:
    data = _encode(_gradient(4000, 3000), "JPEG", quality=80)
    decoded = decode(data, max_side, model_side)
    assert decoded.read_size == read
    assert decoded.rgb.shape == (out[1], out[0], 3)
    if model is None:
        assert decoded.model_rgb is None
    else:
        assert decoded.model_rgb is not None
        assert decoded.model_rgb.shape == (model[1], model[0], 3)
        assert min(decoded.model_rgb.shape[:2]) >= min(model_side, 3000)


def test_a_large_png_is_box_reduced_for_the_model() -> None:
    decoded = decode(_encode(_gradient(3000, 2100), "PNG"), 256, 1024)
    assert decoded.rgb.shape == (179, 256, 3)
    assert decoded.model_rgb is not None and decoded.model_rgb.shape == (1050, 1500, 3)


def test_a_display_p3_profile_is_kept_and_one_for_another_colour_space_dropped() -> None:
    p3 = display_p3_profile()
    assert decode(_encode(_gradient(), "JPEG", icc_profile=p3), 2048).icc_profile == p3
    assert decode(_encode(_gradient(), "PNG", icc_profile=p3), 2048).icc_profile == p3
    cmyk = _gradient().convert("CMYK")
    fake_cmyk_profile = p3[:16] + b"CMYK" + p3[20:]  # a CMYK one would mislabel RGB outputs
    decoded = decode(_encode(cmyk, "JPEG", icc_profile=fake_cmyk_profile), 2048)
    assert decoded.icc_profile is None and decoded.rgb.shape == (48, 64, 3)
