"""Side-by-side figures of the four effects on the three bundled photos (docs/effects-*.png).

    .venv/bin/python docs/make_effects_figures.py

Each figure: the photo, then color, enhancedblackwhite, popart and dithering as the service
makes them (mask from the model, fused effects pass), laid on a light checkerboard so the
transparency and the soft edges show.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contract.effects import EFFECT_NAMES  # noqa: E402
from tests.conftest import PHOTO_NAMES, photo_jpeg  # noqa: E402
from workers.effects import render  # noqa: E402
from workers.imageio import decode  # noqa: E402
from workers.predictor import load_segmenter  # noqa: E402
from workers.settings import WorkerSettings  # noqa: E402

SIZE = 512
GAP = 8
LABEL = 28


def checkerboard(height: int, width: int, cell: int = 12) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    light = ((y // cell + x // cell) % 2).astype(np.float32)
    return np.repeat((0.86 + 0.08 * light)[..., None], 3, axis=2)


def figure(rgb: np.ndarray, colours: dict[str, torch.Tensor], alpha: torch.Tensor) -> Image.Image:
    height, width = rgb.shape[:2]
    a = alpha[0].permute(1, 2, 0).numpy()
    board = checkerboard(height, width)
    panels = [("photo", rgb.astype(np.float32) / 255)]
    for name in EFFECT_NAMES:
        colour = colours[name][0].expand(3, -1, -1).permute(1, 2, 0).numpy()
        panels.append((name, colour * a + board * (1 - a)))
    canvas = Image.new("RGB", (len(panels) * (width + GAP) - GAP, height + LABEL), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=18)
    for i, (name, pixels) in enumerate(panels):
        left = i * (width + GAP)
        canvas.paste(Image.fromarray((pixels * 255).round().astype(np.uint8)), (left, LABEL))
        draw.text((left + 4, 4), name, fill=(40, 40, 40), font=font)
    return canvas


def main() -> None:
    segmenter, _ = load_segmenter(WorkerSettings.from_env())
    for photo in PHOTO_NAMES:
        rgb = decode(photo_jpeg(photo), SIZE).rgb
        tensor = torch.from_numpy(rgb).permute(2, 0, 1)
        mask = segmenter.predict([tensor])[0].unsqueeze(0)
        rendered = render(tensor.unsqueeze(0).float() / 255, mask, EFFECT_NAMES)
        path = ROOT / "docs" / f"effects-{photo}.png"
        figure(rgb, rendered.colours, rendered.alpha).save(path, optimize=True)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
