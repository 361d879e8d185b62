"""The pipeline's stages with a stand-in engine (no weights, so it runs in a second): batches in
flight overlapping around the one device, out-of-memory splitting, previews, reduced inputs,
and the photo's colour profile on every output."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from tests.icc import display_p3_profile
from workers.device_decode import device_jpeg_decoder
from workers.effects import EFFECTS
from workers.models.isnet import ISNET_CONFIG
from workers.pipeline import PREVIEW_SIDE, EncodedOutput, JobInput, Pipeline
from workers.predictor import Segmenter

ALL = ("color", "enhancedblackwhite", "popart", "dithering")
CONFIG = replace(ISNET_CONFIG, input_size=64)  # small: the stand-in needs no real input


class StandInEngine:
    """A mask from brightness, standing in for a model on a device: it records every call,
    may take ``seconds`` per call (a busy device), and raises ``torch.OutOfMemoryError``, as
    CUDA does, for batches larger than ``fits``."""

    name = "stand-in"
    warm_batch_sizes = (1,)

    def __init__(self, seconds: float = 0.0, fits: int | None = None) -> None:
        self.device = torch.device("cpu")
        self.seconds = seconds
        self.fits = fits
        self.calls: list[tuple[int, ...]] = []

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(batch.shape))
        if self.fits is not None and batch.shape[0] > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory (a batch of {batch.shape[0]})")
        time.sleep(self.seconds)
        return torch.sigmoid((batch.mean(1, keepdim=True) + 0.1) * 20)


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def photo(width: int = 96, height: int = 64, seed: int = 0, icc: bytes | None = None) -> bytes:
    """A small JPEG: a bright subject on a dark ground, so the stand-in's mask has both."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] += 150
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **({"icc_profile": icc} if icc else {}))
    return out.getvalue()


def test_batches_in_flight_overlap_and_take_the_device_one_at_a_time(
    pool: ThreadPoolExecutor,
) -> None:
    engine = StandInEngine(seconds=0.4)
    pipeline = Pipeline(Segmenter(engine, CONFIG), pool)
    batches = [
        [JobInput(f"b{k}-{i}", photo(seed=k * 2 + i), ALL, 96, "webp") for i in range(2)]
        for k in range(3)
    ]
    with ThreadPoolExecutor(3) as worker_threads:  # as the gpu worker's pool runs its batches
        futures = []
        for batch in batches:
            futures.append(worker_threads.submit(pipeline.process, batch))
            time.sleep(0.1)
        results = [future.result() for future in futures]
    assert all(o.ok for r in results for o in r.outcomes)
    spans = [r.spans for r in results]
    for k in range(2):  # the trace: batch k+1 was decoding while batch k was on the device
        assert spans[k + 1]["decode"][0] < spans[k]["inference"][1], spans
    on_device = sorted((s["inference"][0], s["effects"][1]) for s in spans)
    for (_, end), (start, _) in zip(on_device, on_device[1:], strict=False):
        assert end <= start, f"two batches on the device at once: {on_device}"
    assert [c[0] for c in engine.calls] == [2, 2, 2]


def test_out_of_memory_splits_the_batch_in_halves_until_every_job_fits(
    pool: ThreadPoolExecutor,
) -> None:
    engine = StandInEngine(fits=2)
    pipeline = Pipeline(Segmenter(engine, CONFIG), pool)
    jobs = [JobInput(f"j{i}", photo(seed=i), ("color",), 96, "webp") for i in range(5)]
    result = pipeline.process(jobs)
    assert all(o.ok and len(o.outputs) == 2 for o in result.outcomes)
    assert [shape[0] for shape in engine.calls] == [5, 2, 3, 1, 2]
    assert [c.images for c in result.model_calls] == [2, 1, 2]
    assert [o.batch_size for o in result.outcomes] == [2, 2, 1, 2, 2]


def test_a_job_that_does_not_fit_even_alone_fails_alone(pool: ThreadPoolExecutor) -> None:
    pipeline = Pipeline(Segmenter(StandInEngine(fits=0), CONFIG), pool)
    jobs = [
        JobInput("a", photo(seed=1), ("color",), 96, "webp"),
        JobInput("bad", b"\xff\xd8\xff\xe0 not a jpeg", ("color",), 96, "webp"),
    ]
    outcomes = pipeline.run(jobs)
    assert [o.error_code for o in outcomes] == ["resources_exhausted", "invalid_image"]
    assert "out of memory" in (outcomes[0].error_message or "")


def test_jobs_at_a_reduced_input_get_a_model_call_of_their_own(pool: ThreadPoolExecutor) -> None:
    engine = StandInEngine()
    pipeline = Pipeline(Segmenter(engine, CONFIG), pool)
    jobs = [
        JobInput("full", photo(seed=1), ("color",), 96, "png"),
        JobInput("reduced", photo(seed=2), ("color",), 96, "png", model_input=32),
        JobInput("full2", photo(seed=3), ("color",), 96, "png"),
    ]
    result = pipeline.process(jobs)
    assert [(c.images, c.input_size) for c in result.model_calls] == [(2, 64), (1, 32)]
    assert sorted(engine.calls) == [(1, 3, 32, 32), (2, 3, 64, 64)]
    assert [o.model_input for o in result.outcomes] == [64, 32, 64]
    assert all(o.ok for o in result.outcomes)


@pytest.mark.parametrize("fmt", ["webp", "png", "jpg+mask"])
def test_previews_come_first_and_a_display_p3_profile_reaches_every_colour_output(
    pool: ThreadPoolExecutor, fmt: str
) -> None:
    p3 = display_p3_profile()
    pipeline = Pipeline(Segmenter(StandInEngine(), CONFIG), pool)
    published: list[tuple[str, list[EncodedOutput]]] = []
    job = JobInput("p3", photo(640, 480, icc=p3), ALL, 600, fmt, preview=True)
    plain = JobInput("plain", photo(640, 480, seed=5, icc=p3), ("color",), 600, fmt)
    result = pipeline.process([job, plain], lambda job_id, out: published.append((job_id, out)))

    outcome = result.outcomes[0]
    assert outcome.ok and "preview_ms" in outcome.timings
    assert [job_id for job_id, _ in published] == ["p3"]  # only the job that asked
    previews = {p.name: p for p in published[0][1]}
    assert list(previews) == list(ALL)
    for name, preview in previews.items():
        with Image.open(io.BytesIO(preview.data)) as img:
            assert img.format == "WEBP" and img.size == (PREVIEW_SIDE, 192)
            assert (preview.width, preview.height) == img.size
            assert "A" in img.getbands(), name
            assert img.info.get("icc_profile") == colour_profile(name, p3), name
    for out in outcome.outputs:
        with Image.open(io.BytesIO(out.data)) as img:
            img.load()
            assert img.info.get("icc_profile") == colour_profile(out.name, p3), (fmt, out.name)


def colour_profile(name: str, icc: bytes) -> bytes | None:
    """The profile an output should carry: the photo's on colour, none on grey or the mask."""
    return icc if name in EFFECTS and EFFECTS[name].channels == 3 else None


class StandInJpegDecoder:
    """Stands in for nvJPEG (no GPU here): records each batched call, decodes upright with
    Pillow into 3×H×W tensors, or fails as nvJPEG does on a JPEG it cannot read."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[int] = []

    def __call__(self, blobs: Sequence[bytes]) -> list[torch.Tensor]:
        self.calls.append(len(blobs))
        if self.fail:
            raise RuntimeError("nvjpeg: unsupported JPEG")
        images = [ImageOps.exif_transpose(Image.open(io.BytesIO(b))).convert("RGB") for b in blobs]
        return [torch.from_numpy(np.array(img)).permute(2, 0, 1) for img in images]


def turned(data: bytes) -> bytes:
    """The photo stored a quarter turned, with EXIF orientation 6 saying how to turn it back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.mark.parametrize("fails", [False, True])
def test_a_batchs_jpegs_decode_on_the_device_in_one_call_else_with_pillow(
    pool: ThreadPoolExecutor, fails: bool
) -> None:
    assert device_jpeg_decoder(torch.device("cpu")) is None  # Pillow on a CPU worker
    p3 = display_p3_profile()
    png = io.BytesIO()
    Image.open(io.BytesIO(photo(640, 480, seed=4))).save(png, "PNG")
    jobs = [
        JobInput("p3", photo(640, 480, icc=p3), ("color",), 320, "png"),
        JobInput("turned", turned(photo(640, 480, seed=2)), ("color",), 320, "png"),
        JobInput("png", png.getvalue(), ("color",), 320, "png"),
        JobInput("bad", b"\xff\xd8\xff\xe0 not a jpeg", ("color",), 320, "png"),
    ]
    decoder = StandInJpegDecoder(fail=fails)
    outcomes = Pipeline(Segmenter(StandInEngine(), CONFIG), pool, None, decoder).run(jobs)
    assert decoder.calls == [2], "the two JPEGs, in one call; the PNG and the bad one not"
    assert [o.error_code for o in outcomes] == [None, None, None, "invalid_image"]
    reference = Pipeline(Segmenter(StandInEngine(), CONFIG), pool, None, None).run(jobs[:3])
    for outcome, pillow in zip(outcomes, reference, strict=False):
        got, want = (Image.open(io.BytesIO(o.outputs[0].data)) for o in (outcome, pillow))
        assert got.size == want.size == (320, 240), outcome.job_id
        assert got.info.get("icc_profile") == (p3 if outcome.job_id == "p3" else None)
        diff = np.abs(np.asarray(got, np.int16) - np.asarray(want, np.int16))
        assert diff[..., :3].mean() < 4, outcome.job_id  # resized on the device or by Pillow
