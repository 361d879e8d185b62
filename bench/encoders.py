"""Host encoders side by side: what each output costs to encode on one CPU core, and its size.

    .venv/bin/python -m bench.encoders [--repeats 7]     (bench/effects.py prints it too)

For each output the worker encodes on the host — the mask PNG, popart's palette PNG and
dithering's 1-bit PNG (``jpg+mask``), the host JPEG path (``jpg+mask`` where there is no
device encoder), RGBA PNG (``png``), lossy and lossless WebP (``webp``) — the encoder in use
before this bench (Pillow, the baseline) against Pillow's other settings, fpng, libvips
(pyvips with its bundled binary) and simplejpeg, on one photo's real outputs at 2048 px; rows
marked "in use" are what ``workers.imageio`` encodes with now.
CPU ms is the process's CPU time (not wall: the machine may be shared), median of repeats;
each candidate's output is decoded back and checked (lossless ones pixel for pixel).
A candidate is worth adopting when it is ≥ 1.5x faster at ≤ 1.3x the bytes.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from workers.imageio import JPEG_QUALITY, WEBP_QUALITY, encode_image, encode_mask

Encode = Callable[[], bytes]


@dataclass(frozen=True)
class Candidate:
    output: str  # which output it would encode
    name: str
    encode: Encode
    lossless: bool


def _pillow(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def _one_bit(ink: np.ndarray) -> Image.Image:
    return Image.fromarray(ink[..., 0], "L").convert("1", dither=Image.Dither.NONE)


def candidates(
    colour: np.ndarray, grey: np.ndarray, poster: np.ndarray, ink: np.ndarray, alpha: np.ndarray,
    palette: np.ndarray,
) -> list[Candidate]:  # fmt: skip
    """``colour``: H×W×3 tone; ``grey``: H×W×1 tone; ``poster``: H×W×3 in ``palette``'s
    colours; ``ink``: H×W×1 0/255; ``alpha``: H×W."""
    rows = [
        Candidate(
            "mask PNG", "Pillow level 1 (baseline)",
            lambda: _pillow(Image.fromarray(alpha, "L"), "PNG", compress_level=1), True,
        ),
        Candidate(
            "mask PNG", "Pillow level 1, no filter",
            lambda: _pillow(Image.fromarray(alpha, "L"), "PNG", compress_level=1, filter=0),
            True,
        ),
        Candidate(
            "palette PNG", "Pillow quantize + level 1 (baseline, in use)",
            lambda: encode_image(poster, None, "png-palette", None, palette), True,
        ),
        Candidate(
            "1-bit PNG", "Pillow level 1 (baseline)",
            lambda: _pillow(_one_bit(ink), "PNG", compress_level=1), True,
        ),
        Candidate(
            "1-bit PNG", "Pillow level 9",
            lambda: _pillow(_one_bit(ink), "PNG", compress_level=9), True,
        ),
        Candidate(
            "JPEG colour", "Pillow q90 (baseline, in use)",
            lambda: encode_image(colour, None, "jpeg"), False,
        ),
        Candidate(
            "JPEG grey", "Pillow q90 (baseline, in use)",
            lambda: encode_image(grey, None, "jpeg"), False,
        ),
        Candidate(
            "RGBA PNG", "Pillow level 1 (baseline)",
            lambda: _pillow(Image.fromarray(np.dstack((colour, alpha)), "RGBA"), "PNG",
                            compress_level=1), True,
        ),
        Candidate(
            "lossy WebP", "Pillow method 0 (baseline, in use)",
            lambda: encode_image(colour, alpha, "webp"), False,
        ),
        Candidate(
            "lossless WebP (poster)", "Pillow method 0 (baseline, in use)",
            lambda: encode_image(poster, alpha, "webp-lossless"), True,
        ),
        Candidate(
            "lossless WebP (ink)", "Pillow method 0 (baseline, in use)",
            lambda: encode_image(ink, alpha, "webp-lossless"), True,
        ),
    ]  # fmt: skip
    try:
        import fpng

        rows += [
            Candidate(
                "RGBA PNG", "fpng (in use)", lambda: encode_image(colour, alpha, "png"), True
            ),
            Candidate(
                "mask PNG", "fpng (as RGB: it writes 3 or 4 channels only)",
                lambda: fpng.from_ndarray(np.repeat(alpha[..., None], 3, axis=2)), True,
            ),
        ]  # fmt: skip
    except ImportError:
        pass
    try:
        import simplejpeg

        rows += [
            Candidate(
                "JPEG colour", "simplejpeg q90",
                lambda: simplejpeg.encode_jpeg(colour, JPEG_QUALITY, "RGB"), False,
            ),
            Candidate(
                "JPEG grey", "simplejpeg q90",
                lambda: simplejpeg.encode_jpeg(grey, JPEG_QUALITY, "GRAY"), False,
            ),
        ]  # fmt: skip
    except ImportError:
        pass
    rows += _vips_candidates(colour, grey, poster, ink, alpha)
    return rows


def _vips_candidates(
    colour: np.ndarray, grey: np.ndarray, poster: np.ndarray, ink: np.ndarray, alpha: np.ndarray
) -> list[Candidate]:
    try:
        import pyvips
    except Exception:  # not installed, or its library not found
        return []
    pyvips.cache_set_max(0)  # every call encodes: no answer from libvips' operation cache

    def png(array: np.ndarray, **options: object) -> bytes:
        image = pyvips.Image.new_from_array(np.ascontiguousarray(array))
        return bytes(image.pngsave_buffer(compression=1, **options))

    def jpeg(array: np.ndarray) -> bytes:
        image = pyvips.Image.new_from_array(np.ascontiguousarray(array))
        return bytes(image.jpegsave_buffer(Q=JPEG_QUALITY))

    def webp(array: np.ndarray, **options: object) -> bytes:
        image = pyvips.Image.new_from_array(np.ascontiguousarray(array))
        return bytes(image.webpsave_buffer(effort=0, **options))

    rgba = np.dstack((colour, alpha))
    rows = [
        ("mask PNG", "libvips compression 1 (in use)", partial(encode_mask, alpha), True),
        ("mask PNG", "libvips compression 1, no filter", partial(png, alpha, filter=0), True),
        ("palette PNG", "libvips palette (libimagequant), compression 1",
         partial(png, poster, palette=True, bitdepth=4), True),
        ("1-bit PNG", "libvips bitdepth 1, compression 1 (in use)",
         partial(encode_image, ink, None, "png-bilevel"), True),
        ("JPEG colour", "libvips Q90", partial(jpeg, colour), False),
        ("JPEG grey", "libvips Q90", partial(jpeg, grey[..., 0]), False),
        ("RGBA PNG", "libvips compression 1", partial(png, rgba), True),
        ("lossy WebP", "libvips Q90 effort 0", partial(webp, rgba, Q=WEBP_QUALITY), False),
        ("lossless WebP (poster)", "libvips effort 0",
         partial(webp, np.dstack((poster, alpha)), lossless=True), True),
        ("lossless WebP (ink)", "libvips effort 0",
         partial(webp, np.dstack((ink, alpha)), lossless=True), True),
    ]  # fmt: skip
    return [Candidate(*row) for row in rows]


def cpu_ms(encode: Encode, repeats: int) -> float:
    encode()  # warm
    times = []
    for _ in range(repeats):
        start = time.process_time()
        encode()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def decodes_back(data: bytes, lossless: bool, expected: dict[str, np.ndarray], output: str) -> str:
    """'exact', 'lossy', or what is wrong with the file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels = np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))
    except Exception as exc:
        return f"unreadable: {exc}"
    if not lossless:
        return "lossy"
    want = expected[output]
    got = pixels[..., : want.shape[2]] if want.shape[2] <= 4 else pixels
    if want.shape[2] == 1:
        got = pixels[..., :1]
    return "exact" if np.array_equal(got, want) else "DIFFERS"


def table(rows: list[Candidate], expected: dict[str, np.ndarray], repeats: int) -> list[str]:
    lines = [
        "| output | encoder | CPU ms | KiB | speed vs baseline | bytes vs baseline "
        "| decodes back |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    baseline: dict[str, tuple[float, int]] = {}
    for row in rows:
        data = row.encode()
        ms = cpu_ms(row.encode, repeats)
        if "(baseline" in row.name:
            baseline[row.output] = (ms, len(data))
        base_ms, base_bytes = baseline[row.output]
        check = decodes_back(data, row.lossless, expected, row.output)
        lines.append(
            f"| {row.output} | {row.name} | {ms:.1f} | {len(data) / 1024:.0f} "
            f"| {base_ms / ms:.2f}x | {len(data) / base_bytes:.2f}x | {check} |"
        )
    return lines


def outputs_of_a_photo() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One photo's four effects at 2048 px as H×W×C uint8, its alpha, from the model's mask."""
    import torch

    from bench.effects import _photo, _to_host
    from contract.effects import EFFECT_NAMES
    from workers.effects import render
    from workers.predictor import load_segmenter
    from workers.settings import WorkerSettings

    rgb = _photo()
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    segmenter, _ = load_segmenter(WorkerSettings.from_env(), "eager")
    mask = segmenter.predict([tensor])[0].unsqueeze(0)
    rendered = render(tensor.unsqueeze(0).float() / 255, mask, EFFECT_NAMES)
    colours = {name: _to_host(c)[0] for name, c in rendered.colours.items()}
    return colours, _to_host(rendered.alpha)[0, ..., 0]


def report(colours: dict[str, np.ndarray], alpha: np.ndarray, repeats: int) -> list[str]:
    from workers.effects import EFFECTS

    palette = np.round(np.array(EFFECTS["popart"].palette) * 255).astype(np.uint8)
    poster, ink = colours["popart"], colours["dithering"]
    rows = candidates(colours["color"], colours["enhancedblackwhite"], poster, ink, alpha, palette)
    visible = (alpha > 0)[..., None]
    expected = {
        "mask PNG": alpha[..., None],
        "palette PNG": poster,
        "1-bit PNG": ink,
        "RGBA PNG": np.dstack((colours["color"], alpha)),
        "lossless WebP (poster)": np.dstack((poster * visible, alpha)),
        "lossless WebP (ink)": np.dstack((np.repeat(ink * visible, 3, axis=2), alpha)),
    }
    rows.sort(key=lambda r: (r.output, "(baseline" not in r.name))
    return table(rows, expected, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.encoders", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    colours, alpha = outputs_of_a_photo()
    print("\n".join(report(colours, alpha, args.repeats)))


if __name__ == "__main__":
    main()
