"""The fused effects pass against each effect alone, and the cost of encoding, at 2048 px.

    .venv/bin/python -m bench.effects [--repeats 5] [--device cpu|cuda] [--batch 4]
    .venv/bin/python -m bench.effects --client-effects   # table 7 only

Everything is measured in one run on one photo (scikit-image's coffee, upscaled to 2048 px
and decoded as the service decodes it) and its mask from the model, so every ratio compares
figures taken side by side. Tables:

1. the fused four-effect pass against each effect run alone from the same inputs;
2. encoding one job's outputs per format, one thread, against Pillow's default PNG;
3. the encode thread pool's throughput with 1, 2, 4… threads (default ``webp`` format);
4. the CPU cost of one job (effects + encoding) per format;
5. host encoders side by side (``bench/encoders.py``): CPU ms and bytes per output;
6. on CUDA only: effects, device dithering and device JPEG encoding per job at ``--batch``;
7. ``--client-effects``: server CPU per job with three effects left to the browser against all
   four on the server, and each effect's browser render time (``bench/client_effects.py``).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench import encoders
from bench.timing import sync
from contract.effects import EFFECT_NAMES, OUTPUT_FORMATS
from workers.effects import EFFECTS, EffectInputs, dither_cuda, render
from workers.effects.dither import diffuse
from workers.effects.stylise import dithering_grey
from workers.imageio import JPEG_QUALITY, decode, encode_mask
from workers.outputs import codec_for, device_jpeg_encoder, encode_effect
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings

SIDE = 2048


def _photo() -> np.ndarray:
    from skimage import data

    img = Image.fromarray(data.coffee()).convert("RGB")
    scale = SIDE / max(img.size)
    img = img.resize(
        (round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS
    )
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return decode(out.getvalue(), SIDE).rgb


def _median_ms(fn: Callable[[], object], repeats: int, clock=time.perf_counter) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times) * 1000


def _interleaved_ms(
    fns: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) ms of functions run in turn, so a busy moment hits all alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in t) * 1000, statistics.median(c for _, c in t) * 1000)
        for name, t in times.items()
    }


def _to_host(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def fused_vs_alone(
    image: torch.Tensor, mask: torch.Tensor, repeats: int
) -> dict[str, tuple[float, float]]:
    device = image.device

    def run(names: list[str]) -> Callable[[], object]:
        def go() -> None:
            render(image, mask, names)
            sync(device)

        return go

    fns = {name: run([name]) for name in EFFECT_NAMES}
    fns["fused"] = run(list(EFFECT_NAMES))
    return _interleaved_ms(fns, repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4, help="images per pass on CUDA")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady figures on a shared box)"
    )
    parser.add_argument(
        "--client-effects", action="store_true", help="only table 7 (browser vs server effects)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    rgb = _photo()
    height, width = rgb.shape[:2]
    segmenter, _ = load_segmenter(WorkerSettings.from_env(), "eager")
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    mask = segmenter.predict([tensor])[0].unsqueeze(0).to(device)
    image = tensor.unsqueeze(0).to(device).float() / 255

    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {device}"
    )
    print(f"photo: coffee at {width}x{height}, mask from the model; medians of {args.repeats}\n")
    if args.client_effects:
        import tempfile

        from bench import client_effects

        with tempfile.TemporaryDirectory() as scratch:
            client_effects.report(image, mask, args.repeats, Path(scratch))
        return

    # 1. Fused against alone.
    alone = fused_vs_alone(image, mask, args.repeats)
    alone["the four alone, summed"] = (
        sum(alone[n][0] for n in EFFECT_NAMES),
        sum(alone[n][1] for n in EFFECT_NAMES),
    )
    fused = alone.pop("fused")
    alone["fused four-effect pass"] = fused
    print("### Fused pass vs each effect alone (one image; ratio: ms / fused ms)\n")
    print("| effects | wall ms | ratio | CPU ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, (wall, cpu) in alone.items():
        label = f"{name} alone" if name in EFFECT_NAMES else name
        print(
            f"| {label} | {wall:.0f} | {wall / fused[0]:.2f} | {cpu:.0f} | {cpu / fused[1]:.2f} |"
        )
    print()

    # 2. Encoding one job per format, one thread.
    rendered = render(image, mask, EFFECT_NAMES)
    alpha = _to_host(rendered.alpha)[0, ..., 0]
    colours = {name: _to_host(c)[0] for name, c in rendered.colours.items()}
    tasks: dict[str, dict[str, Callable[[], bytes]]] = {
        "png level 6 (baseline)": {
            n: partial(_png_default, colours[n], alpha, EFFECTS[n].channels) for n in EFFECT_NAMES
        }
    }
    for fmt in OUTPUT_FORMATS:
        tasks[fmt] = {n: partial(encode_effect, n, colours[n], alpha, fmt) for n in EFFECT_NAMES}
    mask_ms = _median_ms(lambda: encode_mask(alpha), args.repeats, time.process_time)
    mask_bytes = len(encode_mask(alpha))
    print("### Encoding one job's four outputs and the mask (CPU ms, one thread)\n")
    header = " | ".join(EFFECT_NAMES)
    print(f"| format | {header} | mask | job total | KiB | ratio to baseline |")
    print("|---|" + "---:|" * (len(EFFECT_NAMES) + 4))
    totals: dict[str, float] = {}
    for fmt, fns in tasks.items():
        cost = {n: _median_ms(fn, args.repeats, time.process_time) for n, fn in fns.items()}
        size = sum(len(fn()) for fn in fns.values()) + mask_bytes
        totals[fmt] = sum(cost.values()) + mask_ms
        codecs = (
            [codec_for(EFFECTS[n], fmt) for n in EFFECT_NAMES]
            if fmt in OUTPUT_FORMATS
            else ["png"] * len(EFFECT_NAMES)
        )
        cells = " | ".join(
            f"{cost[n]:.0f} ({c})" for n, c in zip(EFFECT_NAMES, codecs, strict=True)
        )
        ratio = totals["png level 6 (baseline)"] / totals[fmt]
        print(
            f"| {fmt} | {cells} | {mask_ms:.0f} | {totals[fmt]:.0f} | {size / 1024:.0f} "
            f"| {ratio:.1f}x faster |"
        )
    print()

    # 3. Thread pool scaling, default format.
    jobs = 8
    work = [(n, colours[n]) for n in EFFECT_NAMES] * jobs
    print(f"### Encode thread pool, `webp`, {jobs} jobs ({jobs * 5} files)\n")
    print("CPU/wall: the cores the pool got. On a quiet machine it nears the thread count when")
    print("the encoders release the GIL; the GIL check below holds whatever the load.\n")
    print("| threads | wall ms | outputs/s | speed-up | CPU/wall |")
    print("|---:|---:|---:|---:|---:|")
    one = 0.0
    threads = 1
    while threads <= max(2, 2 * (os.cpu_count() or 1)):
        with ThreadPoolExecutor(threads) as pool:

            def encode_all(pool: ThreadPoolExecutor = pool) -> None:
                futures = [pool.submit(encode_effect, n, c, alpha, "webp") for n, c in work]
                futures += [pool.submit(encode_mask, alpha) for _ in range(jobs)]
                for f in futures:
                    f.result()

            timed = _interleaved_ms({"pool": encode_all}, max(1, args.repeats // 2))
        wall, cpu = timed["pool"]
        one = one or wall
        print(
            f"| {threads} | {wall:.0f} | {jobs * 5 / wall * 1000:.1f} | {one / wall:.2f} "
            f"| {cpu / wall:.2f} |"
        )
        threads *= 2
    share = _gil_share(lambda: encode_effect("color", colours["color"], alpha, "webp"))
    print(f"\nGIL check: a pure-Python thread kept {share[0]:.0%} of its idle rate during")
    print(f"WebP encodes, {share[1]:.0%} during a C call that holds the GIL.\n")

    # 4. CPU cost of one job.
    effects_cpu = _median_ms(
        lambda: render(image, mask, EFFECT_NAMES), args.repeats, time.process_time
    )
    print("### CPU cost of one job (effects + encoding; CPU ms, summed over threads)\n")
    print("| format | effects | encoding | job |")
    print("|---|---:|---:|---:|")
    for fmt in OUTPUT_FORMATS:
        print(
            f"| {fmt} | {effects_cpu:.0f} | {totals[fmt]:.0f} | {effects_cpu + totals[fmt]:.0f} |"
        )
    print()

    # 5. Host encoders side by side.
    print("### Host encoders side by side (CPU ms per output, one thread; bytes)\n")
    host_mask = _to_host(rendered.alpha)[0, ..., 0]
    print("\n".join(encoders.report(colours, host_mask, args.repeats)))
    print()

    if device.type == "cuda":
        _cuda_table(image, mask, args.batch, args.repeats)


def _gil_share(encode: Callable[[], object]) -> tuple[float, float]:
    """How fast a Python counter thread runs during ``encode`` and during Python work,
    as fractions of its rate during a sleep."""

    def rate(work: Callable[[], object]) -> float:
        stop, counts = threading.Event(), [0]

        def count() -> None:
            while not stop.is_set():
                counts[0] += 1

        thread = threading.Thread(target=count)
        thread.start()
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        return counts[0] / seconds

    idle = rate(lambda: time.sleep(1.0))
    return rate(lambda: [encode() for _ in range(3)]) / idle, rate(_holds_the_gil) / idle


def _holds_the_gil() -> None:
    sum(range(30_000_000))  # one C call that keeps the GIL throughout


def _png_default(colour: np.ndarray, alpha: np.ndarray, channels: int) -> bytes:
    """What a plain service does: RGBA PNG at Pillow's default level (6)."""
    rgb = np.repeat(colour, 3, axis=2) if channels == 1 else colour
    out = io.BytesIO()
    Image.fromarray(np.dstack((rgb, alpha)), "RGBA").save(out, "PNG")
    return out.getvalue()


def _cuda_table(image: torch.Tensor, mask: torch.Tensor, batch: int, repeats: int) -> None:
    device = image.device
    images, masks = image.expand(batch, -1, -1, -1).contiguous(), mask.expand(batch, -1, -1, -1)
    encoder = device_jpeg_encoder(device)

    def effects() -> dict[str, torch.Tensor]:
        rendered = render(images, masks.contiguous(), EFFECT_NAMES)
        out = {
            n: (c.clamp(0, 1) * 255).round().to(torch.uint8) for n, c in rendered.colours.items()
        }
        sync(device)
        return out

    effects_ms = _median_ms(effects, repeats)
    print(f"### CUDA: per job at batch {batch} (wall ms)\n")
    print("| part | ms per job |")
    print("|---|---:|")
    print(f"| four effects, fused, to uint8 on the device | {effects_ms / batch:.2f} |")
    grey = dithering_grey(EffectInputs(images, masks.contiguous()))
    if dither_cuda.runs_on(grey):
        kernel_ms = _median_ms(lambda: (dither_cuda.floyd_steinberg(grey), sync(device)), repeats)
        print(f"| Floyd–Steinberg on the device (one launch a batch) | {kernel_ms / batch:.2f} |")
    else:
        print("| Floyd–Steinberg on the device | numba-cuda not importable: not measured |")
    pages = grey[:, 0].cpu().numpy()
    host_ms = _median_ms(lambda: [diffuse(p) for p in pages], repeats)
    print(f"| Floyd–Steinberg on the host (Pillow, one thread) | {host_ms / batch:.2f} |")
    if encoder is None:
        print("| JPEG on the device | torchvision not importable: not measured |")
        return
    quantised = effects()
    parts = [quantised[n][i] for i in range(batch) for n in ("color", "enhancedblackwhite")]
    jpeg_ms = _median_ms(lambda: encoder(parts, JPEG_QUALITY), repeats)
    print(f"| color + black-and-white JPEG on the device | {jpeg_ms / batch:.2f} |")
    print(
        f"| effects + device JPEGs (`jpg+mask` minus the PNG parts) | "
        f"{(effects_ms + jpeg_ms) / batch:.2f} |"
    )


if __name__ == "__main__":
    main()
