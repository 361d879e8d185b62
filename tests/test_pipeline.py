"""The batch pipeline with the real model: grouping, formats, orientation, device JPEG wiring."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import photo_jpeg
from workers.imageio import decode, fit_within
from workers.pipeline import JobInput, JobOutcome, Pipeline
from workers.predictor import Segmenter, load_segmenter
from workers.settings import WorkerSettings

ALL = ("color", "enhancedblackwhite", "popart", "dithering")

pytestmark = pytest.mark.slow  # the real model, on CPU


@pytest.fixture(scope="module")
def segmenter(weights: Path) -> Segmenter:
    segmenter, _ = load_segmenter(WorkerSettings(checkpoint=weights, device="cpu"))
    return segmenter


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def _rotated_jpeg(name: str) -> bytes:
    """The photo stored turned a quarter, with EXIF orientation 6 saying how to turn it back."""
    upright = Image.open(io.BytesIO(photo_jpeg(name)))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    out = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _outputs(outcome: JobOutcome) -> dict[str, tuple[str, Image.Image]]:
    assert outcome.ok, outcome.error_message
    return {out.name: (out.content_type, _open(out.data)) for out in outcome.outputs}


def _webp_chunks(data: bytes) -> list[bytes]:
    """The chunk names of a WebP file (VP8 : lossy, VP8L: lossless, ALPH: lossless alpha)."""
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        chunks.append(data[pos : pos + 4])
        pos += 8 + size + (size & 1)
    return chunks


def test_a_mixed_batch_gets_every_format_right(
    segmenter: Segmenter, pool: ThreadPoolExecutor
) -> None:
    jobs = [
        JobInput("webp", photo_jpeg("astronaut"), ALL, 256, "webp"),
        JobInput("png", photo_jpeg("coffee"), ALL, 256, "png"),
        JobInput("rotated", _rotated_jpeg("coffee"), ALL, 256, "jpg+mask"),  # same size as png
        JobInput("small", photo_jpeg("chelsea"), ("popart", "color"), 200, "png"),
    ]
    pipeline = Pipeline(segmenter, pool)
    assert pipeline.device_jpeg is None  # CPU: Pillow encodes the JPEGs
    outcomes = {o.job_id: o for o in pipeline.run(jobs)}
    assert all(o.batch_size == 4 for o in outcomes.values())  # one model call for the batch

    for job in jobs:
        outcome = outcomes[job.job_id]
        outputs = _outputs(outcome)
        assert list(outputs) == [*job.effects, "mask"]
        # max_size honoured, aspect kept: the photo's own size scaled to fit.
        with Image.open(io.BytesIO(photo_jpeg(_photo(job)))) as src:
            expected = fit_within(*src.size, job.max_size)
        assert {img.size for _, img in outputs.values()} == {expected}
        assert set(outcome.timings) >= {"decode_ms", "inference_ms", "effects_ms", "encode_ms"}
        mask_type, mask = outputs["mask"]
        assert mask_type == "image/png" and mask.mode == "L"
        alpha = np.asarray(mask)
        for name in job.effects:
            content_type, img = outputs[name]
            if job.format != "jpg+mask":
                assert content_type == f"image/{job.format}"
                rgba = np.asarray(img.convert("RGBA"))
                assert np.array_equal(rgba[..., 3], alpha), f"{job.job_id}/{name}: alpha != mask"
                colour = rgba[..., :3][alpha > 0]
            else:
                colour = np.asarray(img.convert("RGB"))[alpha > 0]
            if name == "dithering":
                assert set(np.unique(colour)) <= {0, 255}
            if name == "popart":
                assert len(np.unique(colour, axis=0)) <= 5

    webp = {out.name: _webp_chunks(out.data) for out in outcomes["webp"].outputs[:4]}
    assert [b"VP8L" in webp[n] for n in ALL] == [False, False, True, True]

    rotated = _outputs(outcomes["rotated"])
    assert [rotated[n][0] for n in ALL] == ["image/jpeg", "image/jpeg", "image/png", "image/png"]
    assert [rotated[n][1].mode for n in ALL] == ["RGB", "L", "P", "1"]

    # The rotated upload comes out upright: it matches the upright upload of the same photo.
    png = _outputs(outcomes["png"])
    upright = np.asarray(png["color"][1].convert("RGBA")).astype(int)
    turned = np.asarray(rotated["color"][1]).astype(int)
    opaque = upright[..., 3] == 255
    assert np.abs(upright[..., :3] - turned)[opaque].mean() < 4
    # Lossless PNG: opaque subject pixels are the decoded input's (read for the model's input).
    rgb = decode(photo_jpeg("coffee"), 256, segmenter.config.input_size).rgb
    assert np.array_equal(upright[..., :3][opaque], rgb[opaque])


def _photo(job: JobInput) -> str:
    return {"webp": "astronaut", "png": "coffee", "rotated": "coffee", "small": "chelsea"}[
        job.job_id
    ]


class _RecordingJpegEncoder:
    """Stands in for nvJPEG (no GPU here): records each batched call, encodes with Pillow."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, ...]]] = []

    def __call__(self, images: Sequence[torch.Tensor], quality: int) -> list[bytes]:
        self.calls.append([tuple(img.shape) for img in images])
        out = []
        for img in images:
            buf = io.BytesIO()
            array = img.permute(1, 2, 0).numpy()
            Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(
                buf, "JPEG", quality=quality
            )
            out.append(buf.getvalue())
        return out


def test_jpeg_parts_go_to_the_device_encoder_and_a_failure_stays_alone(
    segmenter: Segmenter, pool: ThreadPoolExecutor
) -> None:
    data = photo_jpeg("coffee")
    jobs = [
        JobInput("a", data, ALL, 128, "jpg+mask"),
        JobInput("b", data, ("color",), 128, "jpg+mask"),
        # A job whose effects fail, in a group with a good one: retried alone, fails alone.
        JobInput("ok", data, ALL, 96, "webp"),
        JobInput("bad", data, ("sparkle",), 96, "webp"),
    ]
    encoder = _RecordingJpegEncoder()
    outcomes = {o.job_id: o for o in Pipeline(segmenter, pool, encoder).run(jobs)}
    # One call for the same-size group: a's color and black-and-white, b's color.
    assert encoder.calls == [[(3, 85, 128), (1, 85, 128), (3, 85, 128)]]
    a = _outputs(outcomes["a"])
    assert [a[n][1].format for n in ALL] == ["JPEG", "JPEG", "PNG", "PNG"]
    assert len(_outputs(outcomes["b"])) == 2
    assert outcomes["ok"].ok and len(outcomes["ok"].outputs) == 5
    assert outcomes["bad"].error_code == "processing_failed"
    assert "sparkle" in (outcomes["bad"].error_message or "")
