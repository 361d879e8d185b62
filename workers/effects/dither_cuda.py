"""Floyd–Steinberg on a CUDA device, bit for bit Pillow's: numba-cuda, one thread block per
image, one thread per row (up to 8 rows a thread), a barrier per wavefront step.

The step itself is ``workers.effects.dither.pixel_step``, compiled for the device as it is:
the host runs the same function in the same order (``wavefront``) in the tests. numba-cuda is
optional (the GPU image has it; the CPU machines do not): without it, or on another device,
``runs_on`` says no and the caller diffuses on the host. The kernel is launched on torch's
current stream, so it queues behind the effects that made its input.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

MAX_HEIGHT = 8192  # the largest output side; shared memory: 2 × (H + 1) int16 = 32 KiB
MAX_THREADS = 1024
ROWS_PER_THREAD = MAX_HEIGHT // MAX_THREADS


def runs_on(grey: torch.Tensor) -> bool:
    """Whether this B×1×H×W uint8 batch can be diffused where it is."""
    return grey.device.type == "cuda" and grey.shape[-2] <= MAX_HEIGHT and _kernel() is not None


def floyd_steinberg(grey: torch.Tensor) -> torch.Tensor:
    """B×1×H×W uint8 grey on a CUDA device → its ink (0 or 255), on the device."""
    kernel = _kernel()
    batch, _, height, width = grey.shape
    planes = grey[:, 0].contiguous()
    ink = torch.empty_like(planes)
    threads = min(MAX_THREADS, -(-height // 32) * 32)
    index = grey.device.index if grey.device.index is not None else torch.cuda.current_device()
    with cuda.gpus[index]:
        stream = cuda.external_stream(torch.cuda.current_stream(grey.device).cuda_stream)
        # The tensors are made on this stream: no need for numba to wait for it first.
        arrays = [cuda.as_cuda_array(t, sync=False) for t in (planes, ink)]
        kernel[batch, threads, stream](*arrays, width)
    return ink.unsqueeze(1)


# numba's names, set by ``_kernel`` once numba imports. Module globals, not closure cells:
# numba's CUDA simulator (the tests' way to run the kernel on a CPU) swaps ``cuda`` here.
cuda: Any = None
_int16: Any = None
_int32: Any = None
_step: Any = None


def _diffuse(grey, ink, width):  # type: ignore[no-untyped-def]
    """The kernel: block b diffuses image b, thread i rows i, i + blockDim, …"""
    image = cuda.blockIdx.x
    height = grey.shape[1]
    shared = cuda.shared.array((2, MAX_HEIGHT + 1), _int16)
    states = cuda.local.array((ROWS_PER_THREAD, 3), _int32)
    for row in range(ROWS_PER_THREAD):
        for j in range(3):
            states[row, j] = 0
    i = cuda.threadIdx.x
    while i <= height:
        shared[0, i] = 0
        shared[1, i] = 0
        i += cuda.blockDim.x
    cuda.syncthreads()
    for t in range(width + 1 + 2 * (height - 1)):
        for row in range(ROWS_PER_THREAD):
            y = cuda.threadIdx.x + row * cuda.blockDim.x
            if y < height:
                _step(t, y, width, image, grey, ink, shared, states, row)
        cuda.syncthreads()


@functools.cache
def _kernel() -> Any:
    """The compiled kernel (on first use), or None where numba-cuda or a device is missing."""
    global cuda, _int16, _int32, _step
    try:
        from numba import config, int16, int32
        from numba import cuda as numba_cuda

        if not numba_cuda.is_available():
            return None
    except Exception:  # not installed, or no driver it can use
        return None
    from workers.effects.dither import pixel_step

    setattr(config, "CUDA_LOW_OCCUPANCY_WARNINGS", False)  # noqa: B010 (one block per image, by design)
    cuda, _int16, _int32 = numba_cuda, int16, int32
    _step = cuda.jit(device=True)(pixel_step)
    return cuda.jit(_diffuse)
