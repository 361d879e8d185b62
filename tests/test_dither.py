"""Floyd–Steinberg: the device kernel's wavefront order, run on the host with the kernel's own
step function, equals Pillow's raster order bit for bit; the worker's ways of dithering a
batch (threads, deferred host step) equal Pillow's too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from workers.effects import EFFECTS, dither_cuda, render
from workers.effects.dither import diffuse, floyd_steinberg, wavefront


def pillow(grey: np.ndarray) -> np.ndarray:
    """The reference, as the project calls it: Pillow's 1-bit conversion, read back as L."""
    page = Image.fromarray(grey, "L").convert("1", dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(page.convert("L"))


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 37).round().astype(np.uint8)
    return {
        "random 23x31": rng.integers(0, 256, (23, 31), dtype=np.uint8),
        "random 2x2": rng.integers(0, 256, (2, 2), dtype=np.uint8),
        "flat 0": np.zeros((9, 14), np.uint8),
        "flat 128 (the threshold)": np.full((9, 14), 128, np.uint8),
        "flat 129": np.full((9, 14), 129, np.uint8),
        "flat 255": np.full((9, 14), 255, np.uint8),
        "flat 77": np.full((17, 12), 77, np.uint8),
        "gradient across": np.tile(ramp, (15, 1)),
        "gradient down": np.tile(ramp[:, None], (1, 15)),
        "1x40": rng.integers(0, 256, (1, 40), dtype=np.uint8),
        "40x1": rng.integers(0, 256, (40, 1), dtype=np.uint8),
        "1x1": np.array([[200]], np.uint8),
        "checks": (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8),
        "dark noise": rng.integers(0, 40, (20, 20), dtype=np.uint8),  # negative sums to divide
    }


@pytest.mark.parametrize("name", list(_images()))
def test_the_wavefront_order_equals_pillows_raster_order(name: str) -> None:
    grey = _images()[name]
    want = pillow(grey)
    got = wavefront(grey)
    assert got.dtype == np.uint8 and got.shape == grey.shape
    assert np.array_equal(got, want), name
    assert np.array_equal(diffuse(grey), want)


def test_a_batch_dithers_each_image_as_pillow_does_and_no_device_kernel_runs_on_a_cpu() -> None:
    images = [g for g in _images().values() if g.shape == (9, 14)]
    batch = torch.from_numpy(np.stack(images)).unsqueeze(1)
    assert not dither_cuda.runs_on(batch)
    ink = floyd_steinberg(batch)
    assert ink.shape == batch.shape and ink.dtype == torch.uint8
    for got, grey in zip(ink[:, 0].numpy(), images, strict=True):
        assert np.array_equal(got, pillow(grey))


def test_a_deferred_host_step_finishes_dithering_exactly_as_the_whole_effect() -> None:
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 24, 32, generator=gen)
    mask = torch.zeros(2, 1, 24, 32)
    mask[:, :, 4:20, 5:27] = 1.0
    whole = render(image, mask, ["dithering", "color"])
    split = render(image, mask, ["dithering", "color"], defer_host_steps=True)
    assert set(split.colours) == {"color"} and set(split.deferred) == {"dithering"}
    step = EFFECTS["dithering"].host_step
    assert step is not None
    for index, grey in enumerate(split.deferred["dithering"].permute(0, 2, 3, 1).numpy()):
        ink = step.on_host(grey)
        want = (whole.colours["dithering"][index] * 255).round().to(torch.uint8)
        assert np.array_equal(ink[..., 0], want[0].numpy())


SIMULATED = """
import json, sys
import numpy as np
from workers.effects import dither_cuda
from workers.effects.dither import diffuse

kernel = dither_cuda._kernel()
rng = np.random.default_rng(11)
grey = rng.integers(0, 256, (3, 13, 10), dtype=np.uint8)
grey[1] = np.linspace(0, 255, 10).round().astype(np.uint8)  # a gradient
grey[2] = 128
ink = np.zeros_like(grey)
kernel[3, 4](grey, ink, 10)  # 4 threads for 13 rows: up to 4 rows a thread
print(json.dumps([bool(np.array_equal(ink[b], diffuse(grey[b]))) for b in range(3)]))
"""


@pytest.mark.slow
def test_the_cuda_kernel_itself_matches_pillow_in_numbas_cuda_simulator() -> None:
    """The kernel as launched on a GPU (blocks, threads, shared memory, barriers), run by
    numba's CUDA simulator: one Python thread per GPU thread, so a tiny batch."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    run = subprocess.run(
        [sys.executable, "-c", SIMULATED], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.splitlines()[-1]) == [True, True, True]
