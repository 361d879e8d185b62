"""Swin Transformer (Liu et al., ICCV 2021) as a dense-prediction backbone.

The detection-style variant InSPyReNet uses: inputs of any size are padded to whole windows,
every second block shifts its windows by half a window (also on maps no larger than one window),
and the backbone returns the normalised patch embedding plus the normalised output of each stage.
Module paths match the published checkpoints (``layers.2.blocks.5.attn.qkv``).

Only tensor shapes steer the Python control flow, so the graph is static for a fixed input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SwinSpec:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    mlp_ratio: float = 4.0
    patch_size: int = 4


SWIN_B = SwinSpec(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12)


def _relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) index into the bias table; built on the CPU even under a meta device."""
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window, device="cpu"), torch.arange(window, device="cpu"), indexing="ij"
        )
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _pad_to(n: int, multiple: int) -> int:
    """What ``n`` lacks to a whole number of ``multiple``s. Non-negative operands only: traced
    exports (ONNX) truncate integer division where Python floors."""
    return (multiple - n % multiple) % multiple


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """B×H×W×C → (B·nW)×window²×C."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B·nW)×window²×C → B×H×W×C."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def _shift_mask(hp: int, wp: int, window: int, shift: int, like: torch.Tensor) -> torch.Tensor:
    """nW×N×N additive mask: -100 between tokens that come from different regions after the roll."""

    def regions(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=like.device)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    ids = (regions(hp)[:, None] * 3 + regions(wp)[None, :])[None, :, :, None]
    flat = _partition(ids, window).squeeze(-1)
    different = flat[:, None, :] != flat[:, :, None]
    return torch.zeros(different.shape, dtype=like.dtype, device=like.device).masked_fill(
        different, -100.0
    )


class WindowAttention(nn.Module):
    relative_position_index: torch.Tensor

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        # A pure function of the window size: rebuilt here, never read from a checkpoint.
        self.register_buffer(
            "relative_position_index", _relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # Spelled out as the reference computes it rather than F.scaled_dot_product_attention:
        # the pyramid blend thresholds maps derived from these values, and at 1280² a few
        # pixels sit within float noise of the threshold, so the rounding must match too.
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.view(n, n, -1).permute(2, 0, 1)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        pad_b, pad_r = _pad_to(h, self.window), _pad_to(w, self.window)
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(_partition(y, self.window), mask if self.shift else None)
        y = _merge(y, self.window, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y[:, :h, :w, :].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2×2 neighbourhoods → one token with twice the channels (odd sizes padded first)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, spec: SwinSpec, last: bool) -> None:
        super().__init__()
        self.window, self.shift = spec.window_size, spec.window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, self.window, self.shift if i % 2 else 0, spec.mlp_ratio)
            for i in range(depth)
        )
        self.downsample = None if last else PatchMerging(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (this stage's output, the input of the next stage)."""
        hp, wp = h + _pad_to(h, self.window), w + _pad_to(w, self.window)
        mask = _shift_mask(hp, wp, self.window, self.shift, x)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x, x if self.downsample is None else self.downsample(x, h, w)


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.proj(F.pad(x, (0, _pad_to(w, self.patch), 0, _pad_to(h, self.patch))))
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SwinTransformer(nn.Module):
    """``forward(x)``: B×3×H×W → [embedding (C, /4), stage 1 (C, /4), 2 (2C, /8), 3 (4C, /16),
    4 (8C, /32)], each B×channels×h×w."""

    def __init__(self, spec: SwinSpec = SWIN_B) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(spec.patch_size, spec.embed_dim)
        dims = [spec.embed_dim * 2**i for i in range(len(spec.depths))]
        self.channels = [spec.embed_dim, *dims]
        self.layers = nn.ModuleList(
            SwinStage(dim, depth, heads, spec, last=i == len(dims) - 1)
            for i, (dim, depth, heads) in enumerate(
                zip(dims, spec.depths, spec.num_heads, strict=True)
            )
        )
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        outs = [x.contiguous()]
        x = x.flatten(2).transpose(1, 2)
        for i, layer in enumerate(self.layers):
            out, x = layer(x, h, w)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.view(-1, h, w, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
            h, w = (h + 1) // 2, (w + 1) // 2
        return outs
