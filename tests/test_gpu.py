"""The CUDA paths, on a real GPU: CUDA-graph half engine, nvJPEG decode, device JPEG encode,
Floyd–Steinberg on the device, the pipeline on the device (and its device lock), a real CUDA
out-of-memory, NVML.

Skipped where there is no CUDA device (CI has none). They need nothing but torch, the
workers package and (for the engine and pipeline checks) the weights in CUTOUT_MODEL_DIR, so
a GPU box without Redis runs them alone: ``pytest --noconftest -m gpu tests/test_gpu.py``
(``bench/device_run.sh`` does).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from bench.photos import phone_jpeg
from workers.engines import build_engine
from workers.engines.gate import mask_iou
from workers.photos import load_photos
from workers.settings import WorkerSettings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
CUDA = torch.device("cuda")


def _settings(**changes: object) -> WorkerSettings:
    changes = {"device": "cuda", **changes}
    settings = replace(WorkerSettings.from_env(), **changes)  # type: ignore[arg-type]
    if not settings.checkpoint_path().is_file():
        pytest.skip(f"no weights at {settings.checkpoint_path()}")
    return settings


def _photos(names: tuple[str, ...]) -> list[torch.Tensor]:
    return [torch.from_numpy(p).permute(2, 0, 1) for p in load_photos(names).values()]


def test_half_engine_replays_cuda_graphs_and_keeps_eager_masks() -> None:
    from workers.engines.half import HalfEngine
    from workers.predictor import Segmenter, engine_context

    ctx = engine_context(_settings(max_batch=4))  # graphs for batches 1, 2 and 4
    eager, half = build_engine("eager", ctx), HalfEngine(ctx)
    assert half.warm_batch_sizes == (1, 2, 4)
    images = _photos(("astronaut", "chelsea", "coffee"))  # 3: padded to the graph of 4
    x = Segmenter(eager, ctx.config).preprocess(images)
    with torch.inference_mode():
        reference = eager.predict(x)
        replayed = half.predict(x)
        plain = half.model(half._prepare(x)).float()  # the same module, no graph
    assert replayed.shape == reference.shape == (3, 1, ctx.size, ctx.size)
    assert (replayed - plain).abs().max().item() < 2e-2, "graph replay computes the forward"
    for got, want in zip(replayed, reference, strict=True):
        assert mask_iou(got, want) >= 0.99
        assert (got - want).abs().mean().item() < 5e-3


def _pillow_upright(data: bytes) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def test_nvjpeg_decodes_a_batch_upright_like_pillow() -> None:
    from workers.device_decode import device_jpeg_decoder

    decoder = device_jpeg_decoder(CUDA)
    if decoder is None:
        pytest.skip("torchvision does not import beside this torch")
    blobs = [
        phone_jpeg("coffee", size=(1200, 900), seed=1),
        phone_jpeg("astronaut", size=(1200, 900), seed=2, orientation=6),
    ]
    images = decoder(blobs)
    for blob, image in zip(blobs, images, strict=True):
        assert image.device.type == "cuda" and image.dtype == torch.uint8
        want = _pillow_upright(blob)
        got = image.permute(1, 2, 0).cpu().numpy()
        assert got.shape == want.shape  # the turned one comes out 900 wide, 1200 high
        assert np.abs(got.astype(np.int16) - want).mean() < 3  # IDCTs differ by rounding


def test_device_jpeg_encoder_writes_jpegs_pillow_reads() -> None:
    from workers.outputs import device_jpeg_encoder

    encoder = device_jpeg_encoder(CUDA)
    if encoder is None:
        pytest.skip("torchvision does not import beside this torch")
    colour = torch.from_numpy(load_photos(("chelsea",))["chelsea"]).permute(2, 0, 1).to(CUDA)
    grey = colour.float().mean(0, keepdim=True).round().to(torch.uint8)
    blobs = encoder([colour, grey], 90)
    for blob, source in zip(blobs, (colour, grey.expand(3, -1, -1)), strict=True):
        img = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), np.float64)
        want = source.permute(1, 2, 0).cpu().numpy().astype(np.float64)
        psnr = 10 * np.log10(255**2 / np.mean((img - want) ** 2))
        assert psnr > 30, psnr


def test_pipeline_on_the_gpu_matches_the_cpu_pipeline() -> None:
    from contract.effects import EFFECT_NAMES
    from workers.pipeline import JobInput, Pipeline
    from workers.predictor import Segmenter, engine_context

    jobs = [
        JobInput(
            f"{fmt}-{i}",
            phone_jpeg(name, size=(1600, 1200), seed=i, orientation=o),
            EFFECT_NAMES,
            800,
            fmt,
        )
        for i, (name, o) in enumerate((("coffee", 1), ("astronaut", 6)))
        for fmt in ("jpg+mask", "webp")
    ]
    masks = {}
    with ThreadPoolExecutor(8) as pool:
        for device in ("cuda", "cpu"):
            ctx = engine_context(_settings(device=device))
            segmenter = Segmenter(build_engine("eager", ctx), ctx.config)
            outcomes = Pipeline(segmenter, pool).run(jobs)
            for outcome in outcomes:
                assert outcome.ok, (device, outcome.error_message)
                files = {o.name: Image.open(io.BytesIO(o.data)) for o in outcome.outputs}
                assert set(files) == {*EFFECT_NAMES, "mask"}
                assert all(f.size == files["mask"].size for f in files.values())
                masks[device, outcome.job_id] = torch.from_numpy(
                    np.asarray(files["mask"].convert("L"), np.float32) / 255
                )
    for job in jobs:
        # Both upright 1600×1200 (the second stored turned, with EXIF 6), fitted to 800.
        assert masks["cuda", job.job_id].shape == masks["cpu", job.job_id].shape == (600, 800)
        assert mask_iou(masks["cuda", job.job_id], masks["cpu", job.job_id]) >= 0.99


def _greys() -> dict[str, np.ndarray]:
    """Photos as 8-bit grey at odd sizes, and flat, noisy and graded planes."""
    photos = {
        name: np.asarray(Image.fromarray(rgb).convert("L"))
        for name, rgb in load_photos(("astronaut", "chelsea", "coffee", "rocket")).items()
    }
    rng = np.random.default_rng(5)
    return {
        "astronaut 511x383": photos["astronaut"][:383, :511],
        "chelsea (whole)": photos["chelsea"],
        "coffee 1x399": photos["coffee"][200:201, :399],
        "rocket 427x1": photos["rocket"][:427, 100:101],
        "noise 777x1021": rng.integers(0, 256, (777, 1021), dtype=np.uint8),
        "flat 128": np.full((300, 301), 128, np.uint8),
        "ramp": np.tile(np.linspace(0, 255, 1365).round().astype(np.uint8), (2048, 1)),
    }


def test_dithering_on_the_device_equals_pillow_bit_for_bit() -> None:
    from workers.effects import dither_cuda
    from workers.effects.dither import diffuse

    probe = torch.zeros(1, 1, 1, 1, dtype=torch.uint8, device=CUDA)
    assert dither_cuda.runs_on(probe), "numba-cuda is in the GPU image: the kernel must build"
    for name, grey in _greys().items():
        ink = dither_cuda.floyd_steinberg(torch.from_numpy(grey)[None, None].to(CUDA))
        assert np.array_equal(ink[0, 0].cpu().numpy(), diffuse(grey)), name
    # A batch of mixed content, one launch: every image diffused on its own.
    rng = np.random.default_rng(9)
    photo = _greys()["chelsea (whole)"]
    batch = np.stack(
        [photo, 255 - photo, np.full_like(photo, 77), rng.integers(0, 256, photo.shape, np.uint8)]
    )
    ink = dither_cuda.floyd_steinberg(torch.from_numpy(batch)[:, None].to(CUDA))
    for b in range(len(batch)):
        assert np.array_equal(ink[b, 0].cpu().numpy(), diffuse(batch[b])), b


def test_the_dithering_effect_runs_on_the_device_and_is_pillows_on_its_own_grey() -> None:
    from workers.effects import EFFECTS, EffectInputs, render
    from workers.effects.dither import diffuse

    photo = torch.from_numpy(load_photos(("coffee",))["coffee"]).permute(2, 0, 1)
    image = torch.stack([photo, photo.flip(2)]).to(CUDA).float() / 255
    mask = torch.zeros(2, 1, *image.shape[2:], device=CUDA)
    mask[:, :, 50:350, 100:500] = 1.0
    rendered = render(image, mask, ["dithering"], defer_host_steps=True)
    assert set(rendered.colours) == {"dithering"} and not rendered.deferred  # done on the device
    # The same steps render took, on one grey (CLAHE's atomic adds may differ between runs in
    # the last bit, so the grey is made once and both diffusions take it).
    step = EFFECTS["dithering"].host_step
    assert step is not None
    grey = step.before(EffectInputs(image, mask))
    ink = (step.on_device(grey) * 255).round().to(torch.uint8).cpu().numpy()
    for b in range(2):
        assert np.array_equal(ink[b, 0], diffuse(grey[b, 0].cpu().numpy())), b


def test_the_device_lock_is_held_for_the_device_work_only() -> None:
    """Batches in flight on the GPU pipeline: each batch's lock hold against its device work
    (CUDA events), printed; the device work must fit in the hold, the hold must not include
    the host stage."""
    from workers.pipeline import JobInput, Pipeline
    from workers.predictor import Segmenter, engine_context

    ctx = engine_context(_settings())
    segmenter = Segmenter(build_engine("eager", ctx), ctx.config)
    batches = [
        [
            JobInput(
                f"{k}-{i}",
                phone_jpeg(name, size=(1600, 1200), seed=k * 4 + i),
                ("color", "dithering", "popart"),
                1024,
                "jpg+mask",
            )
            for i, name in enumerate(("coffee", "astronaut", "chelsea", "rocket"))
        ]
        for k in range(4)
    ]
    with ThreadPoolExecutor(8) as pool, ThreadPoolExecutor(3) as batch_threads:
        pipeline = Pipeline(segmenter, pool)
        pipeline.run(batches[0])  # warm: kernels compiled, allocator filled
        results = list(batch_threads.map(pipeline.process, batches))
    for r in results:
        assert all(o.ok for o in r.outcomes), [o.error_message for o in r.outcomes]
        print(f"lock held {r.lock_held_ms:.1f} ms, device work {r.device_ms:.1f} ms")
        host = r.spans["host"]
        assert host[0] >= r.spans["effects"][1] - 0.002
        assert r.device_ms > 0


class _OutOfMemoryAboveTwo:
    """An engine that asks CUDA for more memory than any card has when given more than two
    images: the allocator's own ``torch.OutOfMemoryError``, not a raised imitation."""

    name = "oom-above-two"
    device = CUDA
    warm_batch_sizes: tuple[int, ...] = (1,)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.shape[0])
        if batch.shape[0] > 2:
            torch.empty(1 << 50, dtype=torch.uint8, device=CUDA)  # a petabyte
        return torch.sigmoid(batch.mean(1, keepdim=True))


def test_a_real_cuda_out_of_memory_splits_the_batch() -> None:
    from workers.models.isnet import ISNET_CONFIG
    from workers.pipeline import JobInput, Pipeline
    from workers.predictor import Segmenter

    engine = _OutOfMemoryAboveTwo()
    jobs = [
        JobInput(str(i), phone_jpeg("coffee", size=(400, 300), seed=i), ("color",), 400, "png")
        for i in range(6)
    ]
    with ThreadPoolExecutor(4) as pool:
        outcomes = Pipeline(Segmenter(engine, ISNET_CONFIG), pool).run(jobs)
    assert [o.error_code for o in outcomes] == [None] * 6
    assert engine.batches == [6, 3, 1, 2, 3, 1, 2]


def test_nvml_reads_this_gpu() -> None:
    from observability.gpu_stats import read_gpus

    readings = read_gpus()
    assert readings, "NVML is installed with the driver on a CUDA box"
    name = torch.cuda.get_device_name(0)
    assert any(r.name == name for r in readings), (name, readings)
    assert all(0 < r.memory_used_bytes <= r.memory_total_bytes for r in readings)
    assert all(0.0 <= r.utilization_ratio <= 1.0 for r in readings)


def test_finishing_on_the_gpu_matches_the_cpu() -> None:
    """Background, crop, size, blur and refine=edges: the same outputs from a CUDA pipeline as
    from a CPU one (a stand-in engine, so only the finishing differs by device)."""
    from contract.options import Finishing
    from tests.test_pipeline_stages import CONFIG, StandInEngine, photo
    from workers.pipeline import JobInput, Pipeline
    from workers.predictor import Segmenter

    class OnCuda(StandInEngine):
        def __init__(self) -> None:
            super().__init__()
            self.device = torch.device("cuda")

    forms = [
        {"background": "#ffffff", "crop": "subject", "crop_margin": "10%", "size": "200x120"},
        {"background": "blur", "refine": "edges"},
        {"crop": "subject", "crop_margin": "4px 6%"},
    ]
    jobs = [
        JobInput(str(i), photo(), ("color",), 96, "png",
                 finishing=Finishing.from_form(form))
        for i, form in enumerate(forms)
    ]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        cpu = Pipeline(Segmenter(StandInEngine(), CONFIG), pool).run(jobs)
        gpu = Pipeline(Segmenter(OnCuda(), CONFIG), pool).run(jobs)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.ok and b.ok, (a.error_message, b.error_message)
        assert a.foreground and b.foreground
        assert max(abs(p - q) for p, q in zip(a.foreground, b.foreground, strict=True)) <= 1
        for x, y in zip(a.outputs, b.outputs, strict=True):
            left = np.asarray(Image.open(io.BytesIO(x.data))).astype(int)
            right = np.asarray(Image.open(io.BytesIO(y.data))).astype(int)
            assert left.shape == right.shape, x.name
            assert np.abs(left - right).mean() < 1 and np.abs(left - right).max() <= 16, x.name
