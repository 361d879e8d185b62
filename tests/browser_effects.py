"""Shared by the Node and Chromium checks of the browser's effects (wasm/): the server's
cutout and effects for a few photos, and the equality the issue sets.

Each case is what a job stores: the ``color`` output as the server encodes it in ``png``
format, and the three client effects as the server would render them (uint8 RGBA, colour
zeroed where the alpha is 0, as the stored files hold them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tests import golden
from workers.effects import apply_effects
from workers.outputs import encode_effect

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "api" / "static" / "wasm"
CLIENT_EFFECTS = ("enhancedblackwhite", "popart", "dithering")


@dataclass(frozen=True)
class Case:
    name: str
    cutout_png: bytes
    want: dict[str, np.ndarray]  # effect → H×W×4 uint8


def _rgba(t: torch.Tensor) -> np.ndarray:
    rgba = (t[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy().copy()
    rgba[..., :3] *= rgba[..., 3:] > 0
    return rgba


def server_case(photo: str, long_edge: int | None = None) -> Case:
    """``photo`` (a golden photo, 320 px, or resized to ``long_edge``) as the server makes it."""
    image, mask = golden.inputs(photo)
    if long_edge:
        height, width = image.shape[-2:]
        size = (
            round(height * long_edge / max(height, width)),
            round(width * long_edge / max(height, width)),
        )
        image = (F.interpolate(image, size=size, mode="bilinear") * 255).round().clamp(0, 255) / 255
        mask = F.interpolate(mask, size=size, mode="bilinear").clamp(0, 1)
    out = apply_effects(image, mask, ("color", *CLIENT_EFFECTS))
    color = _rgba(out["color"])
    png = encode_effect("color", color[..., :3], color[..., 3], "png")
    name = f"{photo}-{long_edge or golden.SIZE}"
    return Case(name, png, {effect: _rgba(out[effect]) for effect in CLIENT_EFFECTS})


def differences(effect: str, got: np.ndarray, want: np.ndarray) -> list[str]:
    """What breaks the issue's equality (empty: equal enough): alpha always exact; dithering
    bit for bit; the others within 1 level on 99.5 % of the pixels and 2 anywhere."""
    if got.shape != want.shape:
        return [f"shape {got.shape} != {want.shape}"]
    problems = []
    if not np.array_equal(got[..., 3], want[..., 3]):
        problems.append("alpha differs")
    diff = np.abs(got[..., :3].astype(int) - want[..., :3].astype(int)).max(-1)
    if effect == "dithering":
        if diff.any():
            problems.append(f"{int((diff > 0).sum())} pixels differ")
    elif (diff <= 1).mean() < 0.995 or diff.max() > 2:
        problems.append(f"{(diff > 1).mean():.3%} off by more than 1, max {diff.max()}")
    return problems


def built_module() -> tuple[Path, Path]:
    """The built wrapper and .wasm (``make wasm`` builds them)."""
    manifest = BUILT / "manifest.json"
    assert manifest.is_file(), "the browser effects module is not built: run `make wasm`"
    names = json.loads(manifest.read_text())
    return BUILT / names["module"], BUILT / names["wasm"]
