"""Segmentation engines, measured side by side in one run; prints markdown tables.

1. Model only: latency per call and images/s per engine and batch size at the model's input
   size (1024), each as a ratio to eager at batch 1 measured in this run.
2. Against rembg 2.0.86 (its ``dis_custom`` session on the assembled npm ONNX file, i.e. the
   same IS-Net weights): photo in, mask out at the photo's size, per image, same photos.
3. Cold start per engine: a fresh process from start to its first mask, in an empty model dir
   (artefacts exported or compiled on the way) and again with the artefacts cached.

    python -m bench.engines                       # CPU default: a few minutes
    python -m bench.engines --batches 1,4,8,16,32 --repeats 20    # what a GPU run uses

rembg is a bench-only dependency: ``pip install -e '.[bench]'`` (``make bench-engines``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.timing import median_seconds, sync
from workers.engines import ENGINES, Engine, EngineContext, EngineUnavailable, build_engine
from workers.engines.compiled import package_path
from workers.engines.keys import device_name
from workers.engines.ort import int8_path
from workers.models.fetch import MEDIUM
from workers.photos import load_photos
from workers.predictor import Segmenter, engine_context, load_segmenter, process_age_seconds
from workers.settings import WorkerSettings

PHOTOS = ("astronaut", "chelsea", "coffee")
ARTEFACTS = ("onnxruntime", "int8", "compiled", "tensorrt")  # engines that cache files
ROOT = Path(__file__).resolve().parent.parent


def build_all(ctx: EngineContext, names: list[str]) -> tuple[dict[str, Engine], dict[str, str]]:
    engines, skipped = {}, {}
    for name in names:
        try:
            engines[name] = build_engine(name, ctx)
        except EngineUnavailable as exc:
            skipped[name] = str(exc)
    return engines, skipped


def model_only(
    engines: dict[str, Engine], ctx: EngineContext, batches: list[int], repeats: int
) -> list[str]:
    segmenter_input = Segmenter(engines["eager"], ctx.config).preprocess
    photo = torch.from_numpy(load_photos(PHOTOS[:1])[PHOTOS[0]]).permute(2, 0, 1)
    one = segmenter_input([photo]).cpu()
    rows, base = [], None
    for name, engine in engines.items():
        for b in batches:
            x = one.expand(b, -1, -1, -1).contiguous().to(ctx.device)
            seconds = median_seconds(lambda: engine.predict(x), repeats, ctx.device)  # noqa: B023
            per_second = b / seconds
            base = base or per_second  # eager, batch 1: the first row
            rows.append(
                f"| {name} | {b} | {seconds * 1000:.1f} | {seconds * 1000 / b:.1f} "
                f"| {per_second:.2f} | {per_second / base:.2f}x |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    # The machine is shared: eager at batch 1 once more shows how far the load drifted.
    assert base is not None, "eager runs first"
    x = one.to(ctx.device)
    again = 1 / median_seconds(lambda: engines["eager"].predict(x), repeats, ctx.device)
    rows.append(
        f"| eager (again, last) | 1 | | {1000 / again:.1f} | {again:.2f} | {again / base:.2f}x |"
    )
    head = [
        "| engine | batch | latency ms/batch | ms/img | img/s | vs eager b1 |",
        "|---|---|---|---|---|---|",
    ]
    return head + rows


def against_rembg(engines: dict[str, Engine], ctx: EngineContext, repeats: int) -> list[str]:
    from PIL import Image

    photos = load_photos(PHOTOS)
    tensors = [torch.from_numpy(p).permute(2, 0, 1) for p in photos.values()]
    results: dict[str, float] = {}
    try:
        from rembg import new_session
    except ImportError as exc:
        print(f"rembg skipped: {exc} (pip install -e '.[bench]')", file=sys.stderr)
    else:
        with tempfile.TemporaryDirectory(prefix="cutout-rembg-") as home:
            # rembg only opens custom models under its home (U2NET_HOME): link ours in there.
            (Path(home) / MEDIUM.filename).symlink_to(ctx.artefact_dir / MEDIUM.filename)
            os.environ["U2NET_HOME"] = home
            session = new_session("dis_custom", model_path=str(Path(home) / MEDIUM.filename))
            pil = [Image.fromarray(p) for p in photos.values()]
            results["rembg 2.0.86 dis_custom"] = median_seconds(
                lambda: [session.predict(img) for img in pil], repeats, ctx.device
            ) / len(pil)
    for name, engine in engines.items():
        segmenter = Segmenter(engine, ctx.config)
        results[f"cutout {name}"] = median_seconds(
            lambda: segmenter.predict(tensors),  # noqa: B023
            repeats,
            ctx.device,
        ) / len(tensors)
    base = results.get("rembg 2.0.86 dis_custom") or next(iter(results.values()))
    lines = ["| runner | ms/img (photo in, mask out) | speed vs rembg |", "|---|---|---|"]
    lines += [f"| {k} | {v * 1000:.0f} | {base / v:.2f}x |" for k, v in results.items()]
    return lines


def cold_child(engine: str) -> None:
    """In a fresh process: build, warm, one mask; print the cold start as JSON."""
    segmenter, _ = load_segmenter(WorkerSettings.from_env(), engine)
    cold = segmenter.warm_up()
    photo = torch.from_numpy(load_photos(PHOTOS[:1])[PHOTOS[0]]).permute(2, 0, 1)
    segmenter.predict([photo])
    sync(segmenter.device)
    print(json.dumps({"first_mask": process_age_seconds(), **cold}))


def cold_starts(names: list[str], settings: WorkerSettings, ctx: EngineContext) -> list[str]:
    lines = [
        "| engine | artefacts | process start → first mask s | import | weight load | "
        "engine build | warm-up |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="cutout-cold-") as tmp:
        env = {
            **os.environ,
            "CUTOUT_MODEL_DIR": tmp,
            "CUTOUT_CHECKPOINT": str(settings.checkpoint_path()),
        }
        for name in names:
            states = ("none cached", "cached") if name in ARTEFACTS else ("no artefact",)
            for state in states:
                if name in ("int8", "compiled") and state == "none cached":
                    why = {"int8": "calibration", "compiled": "an AOTInductor compile"}[name]
                    lines.append(f"| {name} | none cached | not run: needs {why} first |")
                    continue
                if name == "int8":
                    shutil.copy(int8_path(ctx), Path(tmp) / int8_path(ctx).name)
                if name == "compiled":
                    packages = Path(tmp) / "compiled"
                    shutil.copytree(ctx.artefact_dir / "compiled", packages, dirs_exist_ok=True)
                proc = subprocess.run(
                    [sys.executable, "-m", "bench.engines", "--cold-child", name],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    lines.append(f"| {name} | {state} | failed: {proc.stderr.strip()[-200:]} |")
                    continue
                c = json.loads(proc.stdout.strip().splitlines()[-1])
                lines.append(
                    f"| {name} | {state} | {c['first_mask']:.2f} | {c.get('import', 0):.2f} "
                    f"| {c['weight_load']:.2f} | {c['engine_build']:.2f} | {c['warm_up']:.2f} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    parser.add_argument("--engines", help="comma list (default: every engine that can run)")
    parser.add_argument("--batches", help="comma list (default: CUDA 1,4,8,16,32; CPU 1,4)")
    parser.add_argument("--repeats", type=int, help="timed calls per row (CUDA 20, CPU 2)")
    parser.add_argument("--no-rembg", action="store_true")
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument(
        "--no-models", action="store_true", help="skip InSPyReNet next to IS-Net (bench.models)"
    )
    parser.add_argument("--cold-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold_child:
        cold_child(args.cold_child)
        return 0

    settings = WorkerSettings.from_env()
    ctx = engine_context(settings)
    cuda = ctx.device.type == "cuda"
    all_batches = [1, 4, 8, 16, 32]
    batches = [int(b) for b in (args.batches or ("1,4,8,16,32" if cuda else "1,4")).split(",")]
    repeats = args.repeats or (20 if cuda else 2)
    names = args.engines.split(",") if args.engines else list(ENGINES)
    notes = []
    if not args.engines and not cuda and not package_path(ctx, "fp32", 1).is_file():
        # Compiling IS-Net with AOTInductor on a 2-core CPU takes minutes; opt in.
        names.remove("compiled")
        notes.append("compiled: skipped, no cached package (pass --engines ...,compiled)")
    if "eager" not in names:
        names.insert(0, "eager")  # the baseline of every ratio
    if set(all_batches) - set(batches):
        notes.append(f"batch sizes not run: {sorted(set(all_batches) - set(batches))}")

    day = datetime.now(UTC).date().isoformat()
    print(f"## Engines on {device_name(ctx.device)}, torch {torch.__version__}, {day}\n")
    print(f"{ctx.size}x{ctx.size}, median of {repeats} timed calls after one warm-up.\n")
    engines, skipped = build_all(ctx, names)
    notes += [f"{name}: skipped: {why}" for name, why in skipped.items()]
    print("\n".join(model_only(engines, ctx, batches, repeats)))
    if not args.no_rembg:
        print("\n" + "\n".join(against_rembg(engines, ctx, max(1, repeats // 2))))
    if not args.no_cold:
        print("\n" + "\n".join(cold_starts(list(engines), settings, ctx)))
    if not args.no_models:
        from bench.models import DEFAULT_MODELS, table, time_models

        print("\nModels, fp32 eager, random weights, batch 1, median of 3 rounds:\n")
        print(table(time_models(list(DEFAULT_MODELS), 3, 1, ctx.device), 1))
    if notes:
        print("\n" + "\n".join(f"- {n}" for n in notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
