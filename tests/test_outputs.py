"""The codec each effect gets per format, and the choice of the device JPEG encoder."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from contract.effects import EFFECT_NAMES, OUTPUT_FORMATS
from workers.effects import EFFECTS
from workers.imageio import CODECS
from workers.outputs import carries_alpha, codec_for, device_jpeg_encoder


def test_every_effect_has_a_codec_for_every_format() -> None:
    expected = {
        "webp": ("webp", "webp", "webp-lossless", "webp-lossless"),
        "png": ("png", "png", "png", "png"),
        "jpg+mask": ("jpeg", "jpeg", "png-palette", "png-bilevel"),
    }
    assert set(expected) == set(OUTPUT_FORMATS)
    for fmt, codecs in expected.items():
        got = tuple(codec_for(EFFECTS[name], fmt) for name in EFFECT_NAMES)
        assert got == codecs, fmt
        assert all(codec in CODECS for codec in got)
    assert [carries_alpha(f) for f in OUTPUT_FORMATS] == [True, True, False]


def test_graphic_effects_never_get_a_lossy_codec() -> None:
    for name, effect in EFFECTS.items():
        if effect.kind != "tone":
            assert {codec_for(effect, f) for f in OUTPUT_FORMATS}.isdisjoint({"webp", "jpeg"}), name


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="gif"):
        codec_for(EFFECTS["color"], "gif")


def test_no_device_encoder_on_cpu() -> None:
    assert device_jpeg_encoder(torch.device("cpu")) is None


def test_no_device_encoder_without_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, as on a box without a matching torchvision.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    assert device_jpeg_encoder(torch.device("cuda")) is None


def test_device_encoder_batches_and_sends_grey_as_rgb(monkeypatch: pytest.MonkeyPatch) -> None:
    # nvJPEG cannot run here: a stand-in with torchvision's signature encodes with Pillow,
    # which checks what our wrapper hands over (one list, 3-channel uint8) and hands back.
    calls: list[list[tuple[int, ...]]] = []

    def encode_jpeg(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
        calls.append([tuple(img.shape) for img in images])
        out = []
        for img in images:
            assert img.dtype == torch.uint8 and img.shape[0] == 3
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=quality)
            out.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
        return out

    vision = types.ModuleType("torchvision")
    vision_io = types.ModuleType("torchvision.io")
    vision_io.encode_jpeg = encode_jpeg  # type: ignore[attr-defined]
    vision.io = vision_io  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", vision)
    monkeypatch.setitem(sys.modules, "torchvision.io", vision_io)
    encode = device_jpeg_encoder(torch.device("cuda"))
    assert encode is not None
    colour = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
    grey = torch.full((1, 16, 24), 128, dtype=torch.uint8)
    blobs = encode([colour, grey], 90)
    assert calls == [[(3, 16, 24), (3, 16, 24)]]
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as img:
            assert img.format == "JPEG" and img.size == (24, 16)
    with Image.open(io.BytesIO(blobs[1])) as img:
        assert np.abs(np.asarray(img).astype(int) - 128).max() <= 2
