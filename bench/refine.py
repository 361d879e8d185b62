"""``refine=edges``: its quality against a matting reference, and its cost per job.

    .venv/bin/python -m bench.refine [--model-inputs 1024,256] [--repeats 3]

Quality. For each photo (scikit-image's astronaut, chelsea, coffee at their own size) and
model input side, the model's mask gives a trimap (sure subject: mask ≥ 0.95, sure
background: ≤ 0.05, both shrunk by ``BAND`` of the long edge; the rest unknown), and
pymatting's closed-form matting (Levin, Lischinski and Weiss, 2008) solves the alpha of the
unknown band from the photo: the reference. The mean absolute error over that band (in 8-bit
levels) is reported for the mask as it is and refined, for a few (radius, eps). A model
input smaller than the photo stands in for the 12 MP case: there the 1024² mask is scaled up
about 4x, here 256² → 512 px is 2x and 1024² → 512 px is none.

Cost. One job (``color``, webp) at 2048 px through the real pipeline on this machine, with
and without ``refine=edges``, median of ``--repeats``, in the same process; and the
refinement alone at that size.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from contract.options import Finishing
from workers.finishing.refine import EPS, RADIUS, refine_edges
from workers.imageio import decode
from workers.pipeline import JobInput, Pipeline
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings

PHOTOS = ("astronaut", "chelsea", "coffee")
BAND = 0.01  # each sure region shrinks by this fraction of the long edge
SETTINGS = [(RADIUS, EPS), (4 / 2048, 1e-3), (16 / 2048, 1e-3), (8 / 2048, 1e-2), (8 / 2048, 1e-4)]


def _jpeg(name: str, side: int | None = None) -> bytes:
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    if side is not None:
        scale = side / max(img.size)
        size = (round(img.width * scale), round(img.height * scale))
        img = img.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def _trimap(mask: np.ndarray) -> np.ndarray:
    radius = max(1, round(BAND * max(mask.shape)))
    t = torch.from_numpy(mask)[None, None]
    size = 2 * radius + 1

    def shrink(region: torch.Tensor) -> torch.Tensor:  # erosion: a min filter
        return -F.max_pool2d(-region.float(), size, stride=1, padding=radius)

    fg = shrink(t >= 0.95)[0, 0].numpy() > 0.5
    bg = shrink(t <= 0.05)[0, 0].numpy() > 0.5
    trimap = np.full(mask.shape, 0.5)
    trimap[fg], trimap[bg] = 1.0, 0.0
    return trimap


def quality(segmenter, inputs: list[int]) -> None:  # type: ignore[no-untyped-def]
    from pymatting import estimate_alpha_cf

    print("| photo | model input | band px | mask MAE | " + " | ".join(
        f"refined r={r * 2048:.0f}/2048 eps={e:g}" for r, e in SETTINGS) + " |")  # fmt: skip
    print("|" + "---|" * (4 + len(SETTINGS)))
    totals: dict[str, list[float]] = {}
    for name in PHOTOS:
        rgb = decode(_jpeg(name), 4096).rgb
        image = torch.from_numpy(rgb).permute(2, 0, 1)
        for side in inputs:
            with torch.inference_mode():
                mask = segmenter.predict([image], input_size=side)[0][None]
            raw = mask[0, 0].numpy().astype(np.float64)
            trimap = _trimap(raw)
            reference = estimate_alpha_cf(rgb.astype(np.float64) / 255, trimap)
            band = trimap == 0.5
            row = [float(np.abs(raw - reference)[band].mean() * 255)]
            photo = image[None].float() / 255
            for radius, eps in SETTINGS:
                with torch.inference_mode():
                    refined = refine_edges(photo, mask.float(), radius, eps)[0, 0].numpy()
                row.append(float(np.abs(refined - reference)[band].mean() * 255))
            totals.setdefault(str(side), []).append(row[0] - row[1])
            cells = " | ".join(f"{v:.2f}" for v in row)
            print(
                f"| {name} {rgb.shape[1]}×{rgb.shape[0]} | {side} | {int(band.sum())} | {cells} |"
            )
    for side, gains in totals.items():
        print(f"model input {side}: default refinement lowers the band MAE by "
              f"{statistics.mean(gains):.2f} levels on average")  # fmt: skip


def cost(segmenter, repeats: int) -> None:  # type: ignore[no-untyped-def]
    data = _jpeg("coffee", 2048)
    refined = Finishing(refine="edges")
    with ThreadPoolExecutor(2) as pool:
        pipeline = Pipeline(segmenter, pool)

        def job(finishing: Finishing) -> float:
            start = time.perf_counter()
            [outcome] = pipeline.run(
                [JobInput("j", data, ("color",), 2048, "webp", finishing=finishing)]
            )
            assert outcome.ok, outcome.error_message
            return time.perf_counter() - start

        job(Finishing())  # warm
        plain, edges = [], []
        for _ in range(repeats):  # interleaved, so load from parallel work hits both alike
            plain.append(job(Finishing()))
            edges.append(job(refined))
    rgb = decode(data, 2048).rgb
    photo = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    mask = torch.rand(1, 1, *photo.shape[-2:]).round()
    alone = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.inference_mode():
            refine_edges(photo, mask)
        alone.append(time.perf_counter() - start)
    p, e, a = statistics.median(plain), statistics.median(edges), statistics.median(alone[1:])
    print(f"\njob at {rgb.shape[1]}×{rgb.shape[0]} (color, webp), median of {repeats}: "
          f"{p * 1000:.0f} ms plain, {e * 1000:.0f} ms with refine=edges "
          f"({(e / p - 1) * 100:+.1f} %); the refinement alone: {a * 1000:.0f} ms "
          f"({a / p * 100:.1f} % of the plain job)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-inputs", default="1024,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    segmenter, _ = load_segmenter(WorkerSettings.from_env())
    quality(segmenter, [int(s) for s in args.model_inputs.split(",")])
    if not args.skip_cost:
        cost(segmenter, args.repeats)


if __name__ == "__main__":
    main()
