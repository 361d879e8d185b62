"""Floyd–Steinberg error diffusion exactly as Pillow does it: on the host, or on a CUDA device.

The reference is Pillow's ``convert("1", dither=FLOYDSTEINBERG)`` on an 8-bit grey image
(libImaging/Convert.c, ``tobilevel``). Its arithmetic is integer only: each pixel becomes
``clip(v + (7·e_left + 3·e_up_right + 5·e_up + 1·e_up_left) / 16)`` with C's division
(truncating toward zero), white above 128; the error ``e`` is that value minus 0 or 255. Pillow
sums the row above's share in one array (``errors``): while it walks row y, pixel x writes
``errors[x] = 3·e(x) + 5·e(x−1) + e(x−2)``, the row below's share for its pixel x − 1, and the
row's end writes ``errors[W] = 5·e(W−1) + e(W−2)``.

So pixel (x, y) needs its left neighbour and what row y − 1 wrote at pixel x + 1: on the step
``t = x + 2y`` every pixel it needs is done, and every row moves one pixel per step (a
wavefront: W + 2H steps for the image instead of W·H). ``pixel_step`` is one row's share of
one step; the CUDA kernel (``workers.effects.dither_cuda``) runs it with one thread per row and
a barrier per step, and ``wavefront`` runs the very same function in that order on the host,
which is how the tests prove the order without a GPU.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

# Per-row state: the error carried to the right (7·e), then Pillow's l0 and l1.
CARRY, L0, L1 = 0, 1, 2


def diffuse(grey: np.ndarray) -> np.ndarray:
    """One H×W uint8 grey image as ink: 0 or 255 per pixel (Pillow; it releases the GIL)."""
    page = Image.fromarray(grey, "L").convert("1", dither=Image.Dither.FLOYDSTEINBERG)
    return np.array(page.convert("L"))  # writable: torch may take it


def pixel_step(t, y, width, image, grey, ink, shared, states, row):  # type: ignore[no-untyped-def]
    """Row ``y``'s part of wavefront step ``t`` in image ``image`` (left untyped: numba
    compiles this very function for the device).

    ``grey`` and ``ink`` are B×H×W; ``shared`` is 2×(H+1): what each row wrote for the row
    below, in the half of the step's parity (step t reads row y − 1's from the step before, at
    index y, and writes its own at index y + 1); ``states[row]`` is this row's carried values.
    A row works on pixel x = t − 2y, and at x = W writes its row end."""
    x = t - 2 * y
    if x < 0 or x > width:
        return
    write = t % 2
    if x == width:
        shared[write, y + 1] = states[row, L0]
        return
    total = states[row, CARRY] + shared[1 - write, y]
    # C division of a possibly negative sum, written with shifts of non-negative values.
    share = total >> 4 if total >= 0 else -((-total) >> 4)
    value = min(max(int(grey[image, y, x]) + share, 0), 255)
    out = 255 if value > 128 else 0
    ink[image, y, x] = out
    error = value - out
    shared[write, y + 1] = 3 * error + states[row, L0]
    states[row, L0] = 5 * error + states[row, L1]
    states[row, L1] = error
    states[row, CARRY] = 7 * error


def wavefront(grey: np.ndarray) -> np.ndarray:
    """``diffuse`` computed in the device kernel's order, with its step function, on the host.

    Slow (Python per pixel): for the tests, on small images."""
    height, width = grey.shape
    planes = grey[None]
    ink = np.zeros_like(planes)
    shared = np.zeros((2, height + 1), np.int16)  # as on the device; |value| <= 1152
    states = np.zeros((height, 3), np.int32)
    for t in range(width + 1 + 2 * (height - 1)):
        # On the device the rows of one step run at once; here one after another, last row
        # first, so a row that read what another wrote on the same step would show.
        for y in reversed(range(height)):
            pixel_step(t, y, width, 0, planes, ink, shared, states, y)
    return ink[0]


def floyd_steinberg(grey: torch.Tensor) -> torch.Tensor:
    """B×1×H×W uint8 grey as B×1×H×W uint8 ink (0 or 255), on the device it is on: the CUDA
    kernel where it runs, else Pillow on the host, a batch's images side by side."""
    from workers.effects import dither_cuda

    if dither_cuda.runs_on(grey):
        return dither_cuda.floyd_steinberg(grey)
    pages = grey[:, 0].cpu().numpy()
    # Serial within an image (22 ms at 2048 px), but Pillow releases the GIL: a batch's
    # images diffuse side by side.
    inks = _diffusion_pool().map(diffuse, pages) if len(pages) > 1 else [diffuse(pages[0])]
    return torch.from_numpy(np.stack(list(inks))).unsqueeze(1).to(grey.device)


@functools.cache
def _diffusion_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dither")
