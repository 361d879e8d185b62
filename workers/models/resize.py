"""Antialiased bilinear resizing written as two matrix products.

Equal to ``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)`` (PIL's
triangle filter, widened by the scale when shrinking), but built from ops every exporter
knows: the TorchScript ONNX exporter has no antialiased resize at any opset, and TensorRT
converters lack it too.
"""

from __future__ import annotations

import torch


def triangle_weights(
    in_size: int, out_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """out_size × in_size; row i holds the normalised weights of output sample i."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # the filter widens when shrinking, never narrows
    centres = (torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale
    taps = torch.arange(in_size, device=device, dtype=torch.float32) + 0.5
    weights = (1 - (taps[None, :] - centres[:, None]).abs() / stretch).clamp(min=0)
    return (weights / weights.sum(1, keepdim=True)).to(dtype)


def resize_antialiased(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×H×W → B×C×size[0]×size[1]."""
    h, w = x.shape[-2:]
    rows = triangle_weights(h, size[0], x.device, x.dtype)
    cols = triangle_weights(w, size[1], x.device, x.dtype)
    return rows @ x @ cols.T
