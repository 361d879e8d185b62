"""The fixed (weight-free) operators of InSPyReNet's image pyramid.

``LaplacianPyramid`` rebuilds a saliency map one level finer from a coarser map plus a Laplacian
residual (7×7 Gaussian, σ = 1). ``Transition`` marks where two pyramids meet: the morphological
gradient (dilation − erosion, elliptical element, borders ignored) of the sigmoid map, above 0.5.
Their constants are non-persistent buffers created on the CPU, so they exist even when the model
is built on the meta device and are never looked for in a checkpoint.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel(size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """1×1×size×size, sums to 1 (the outer product of OpenCV's 1-D Gaussian)."""
    k = cv2.getGaussianKernel(size, sigma)
    return torch.from_numpy(np.outer(k, k)).float()[None, None]


class LaplacianPyramid(nn.Module):
    kernel: torch.Tensor

    def __init__(self, size: int = 7, sigma: float = 1.0) -> None:
        super().__init__()
        self.pad = size // 2
        self.register_buffer("kernel", gaussian_kernel(size, sigma), persistent=False)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Twice the size: zeros between the samples, then the Gaussian (×4 keeps the mean)."""
        z = torch.zeros_like(x)
        x = F.pixel_shuffle(torch.cat([x, z, z, z], 1), 2)
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(x, self.kernel * 4)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"), self.kernel)
        return x[:, :, ::2, ::2]

    def reconstruct(self, coarse: torch.Tensor, laplacian: torch.Tensor) -> torch.Tensor:
        expanded = self.expand(coarse)
        if laplacian.shape[-2:] != expanded.shape[-2:]:
            laplacian = F.interpolate(
                laplacian, expanded.shape[-2:], mode="bilinear", align_corners=True
            )
        return expanded + laplacian


def _ellipse_rectangles(size: int) -> list[tuple[int, int]]:
    """OpenCV's elliptical structuring element as a union of centred rectangles (height, width).

    Each row of the ellipse is a centred run whose half-width shrinks away from the middle row, so
    the rectangle of half-width w spans every row at least that wide.
    """
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    centre = size // 2
    half_widths = [int(row.sum()) // 2 for row in element]
    rectangles = []
    for w in sorted(set(half_widths)):
        rows = max(abs(r - centre) for r, hw in enumerate(half_widths) if hw >= w)
        rectangles.append((2 * rows + 1, 2 * w + 1))
    return rectangles


class Transition(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.rectangles = _ellipse_rectangles(size)

    def dilate(self, x: torch.Tensor) -> torch.Tensor:
        # max_pool2d pads with -inf, so pixels outside the image never win (geodesic border).
        out = [F.max_pool2d(x, (h, w), 1, (h // 2, w // 2)) for h, w in self.rectangles]
        return torch.stack(out).amax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(x)
        gradient = self.dilate(x) + self.dilate(-x)  # dilation − erosion
        return (gradient > 0.5).to(x.dtype)
