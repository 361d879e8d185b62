"""Golden references for the effects: three photos at 320 px, their masks and every effect.

The masks come from the model (IS-Net, fp32) once; the references are what the effects made
of them when the references were last written, stored as RGBA PNG. Regenerate with
``python -m tests.golden`` after changing an effect on purpose: it refuses to overwrite
references that changed unless ``EFFECTS_VERSION`` was bumped (cached results made by the
old definition must not be served as the new one). ``--masks`` reruns the model too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contract.effects import EFFECT_NAMES, EFFECTS_VERSION
from tests.conftest import PHOTO_NAMES, photo_jpeg
from workers.effects import apply_effects
from workers.imageio import decode

DIR = Path(__file__).resolve().parent
SIZE = 320
MANIFEST = DIR / "manifest.json"


def mask_path(photo: str) -> Path:
    return DIR / f"{photo}-mask.png"


def reference_path(photo: str, effect: str) -> Path:
    return DIR / f"{photo}-{effect}.png"


def inputs(photo: str) -> tuple[torch.Tensor, torch.Tensor]:
    """1×3×H×W image in [0, 1] and its 1×1×H×W committed mask."""
    rgb = decode(photo_jpeg(photo), SIZE).rgb
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255
    mask = np.asarray(Image.open(mask_path(photo)))
    return image, torch.from_numpy(mask.copy()).view(1, 1, *mask.shape).float() / 255


def render_rgba(photo: str) -> dict[str, np.ndarray]:
    """Each effect of ``photo`` as H×W×4 uint8."""
    image, mask = inputs(photo)
    out = apply_effects(image, mask, EFFECT_NAMES)
    return {
        name: (t[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        for name, t in out.items()
    }


def differences(got: np.ndarray, want: np.ndarray, effect: str) -> list[str]:
    """What is out of tolerance between an effect's output and its reference (empty: fine)."""
    problems = []
    if not np.array_equal(got[..., 3], want[..., 3]):
        problems.append("alpha differs")
    visible = want[..., 3] > 0
    diff = np.abs(got[..., :3].astype(int) - want[..., :3].astype(int)).max(-1)[visible]
    if effect == "dithering":
        # Error diffusion is chaotic: one flipped pixel moves the rest of the row. Compare
        # the ink density the eye sees (8×8 means) instead of pixels.
        def density(x: np.ndarray) -> np.ndarray:
            h, w = (s - s % 8 for s in x.shape[:2])
            return x[:h, :w, 0].reshape(h // 8, 8, w // 8, 8).mean((1, 3)) / 255

        gap = np.abs(density(got) - density(want))
        if gap.mean() > 0.01 or gap.max() > 0.2:
            problems.append(f"ink density off by {gap.mean():.3f} mean, {gap.max():.3f} max")
    elif effect == "popart":
        if (diff > 0).mean() > 0.005:  # a pixel on a band edge may fall either side
            problems.append(f"{(diff > 0).mean():.2%} of visible pixels changed colour")
    elif diff.max() > 3 or diff.mean() > 0.5:
        problems.append(f"colour off by {diff.mean():.2f} mean, {diff.max()} max (of 255)")
    return problems


def _write_masks() -> None:
    from workers.predictor import load_segmenter
    from workers.settings import WorkerSettings

    segmenter, _ = load_segmenter(WorkerSettings.from_env())
    for photo in PHOTO_NAMES:
        rgb = decode(photo_jpeg(photo), SIZE).rgb
        mask = segmenter.predict([torch.from_numpy(rgb).permute(2, 0, 1)])[0]
        array = (mask[0] * 255).round().to(torch.uint8).cpu().numpy()
        Image.fromarray(array, "L").save(mask_path(photo), optimize=True)


def main(argv: list[str]) -> int:
    if "--masks" in argv or not all(mask_path(p).is_file() for p in PHOTO_NAMES):
        _write_masks()
    recorded = json.loads(MANIFEST.read_text())["effects_version"] if MANIFEST.is_file() else None
    changed = []
    for photo in PHOTO_NAMES:
        for effect, rgba in render_rgba(photo).items():
            path = reference_path(photo, effect)
            if path.is_file() and differences(rgba, np.asarray(Image.open(path)), effect):
                changed.append(path.name)
    if changed and recorded == EFFECTS_VERSION:
        print(f"outputs changed ({', '.join(changed)}): bump EFFECTS_VERSION first")
        return 1
    for photo in PHOTO_NAMES:
        for effect, rgba in render_rgba(photo).items():
            Image.fromarray(rgba, "RGBA").save(reference_path(photo, effect), optimize=True)
    MANIFEST.write_text(json.dumps({"effects_version": EFFECTS_VERSION, "size": SIZE}) + "\n")
    print(f"references written for EFFECTS_VERSION {EFFECTS_VERSION}")
    return 0
