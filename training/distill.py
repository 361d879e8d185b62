"""``python -m training.distill --photos DIR --out DIR``: the whole recipe, from a folder of
photos to a student checkpoint and its report.

1. List the photos and hold some out (by content hash, or ``--holdout DIR``).
2. Label every photo with the teacher (IS-Net from ``CUTOUT_MODEL_DIR``, engine
   ``--teacher-engine``); labels are cached by content hash (``--labels``, default
   ``OUT/labels``), so a rerun or a grown folder labels only new photos.
3. Pack photos and labels as compact arrays (``OUT/pack.npz``; ``--pack FILE`` trains from a
   pack made elsewhere instead: how a GPU box without the photos runs). ``--defer-labels``
   packs the photos the cache has no label for unlabelled, and a run from that pack labels
   them first with the teacher it finds (at the pack's side): where a CPU labels too slowly.
4. Train the student (resumes from ``OUT/last.safetensors``).
5. Export the best held-out model as ``OUT/<model>.safetensors`` (fp16) with its sha256, and
   evaluate it (``training.evaluate``) into ``OUT/report.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.checkpoint import export_student
from training.evaluate import evaluate_pack
from training.labels import TeacherLabels, segmenter_teacher
from training.pack import Pack, build_pack, label_pack, load_pack, save_pack
from training.photos import Photo, list_photos, split_holdout
from training.train import BEST, TrainSettings, train
from workers.models import build_model
from workers.settings import WorkerSettings

TEACHER = "isnet-general-use"


def teacher_labels(cache: Path, engine: str, batch: int) -> TeacherLabels:
    """IS-Net from ``CUTOUT_MODEL_DIR`` on ``engine``, its labels cached under ``cache``."""
    from workers.engines.keys import model_hash
    from workers.predictor import load_segmenter

    settings = replace(
        WorkerSettings.from_env(), model=TEACHER, checkpoint=None, adaptive_queue_depth=0
    )
    segmenter, _ = load_segmenter(settings, engine)
    tag = f"{TEACHER}-{model_hash(settings.checkpoint_path())[:12]}-{segmenter.engine.name}"
    return TeacherLabels(cache, tag, segmenter_teacher(segmenter), batch)


def label_and_pack(args: argparse.Namespace) -> Pack:
    from tqdm import tqdm

    photos = list_photos(args.photos)
    if args.holdout:
        train_photos, held = photos, list_photos(args.holdout)
    else:
        train_photos, held = split_holdout(photos, args.holdout_percent)
    composites = list_photos(args.composites) if args.composites else []
    everything: list[tuple[Photo, bool]] = [
        *((p, False) for p in train_photos),
        *((p, True) for p in held),
        *((p, True) for p in composites),
    ]
    if not train_photos or not held:
        sys.exit(f"need training and held-out photos; found {len(train_photos)} and {len(held)}")
    labels = teacher_labels(args.labels or args.out / "labels", args.teacher_engine, args.batch)
    print(
        f"{len(train_photos)} training photos, {len(held)} held out, {len(composites)} composites"
    )
    masks: list[np.ndarray | None]
    if args.defer_labels:
        masks = [labels.cached(p) for p, _ in everything]
        print(f"{sum(m is None for m in masks)} photos packed unlabelled (--defer-labels)")
    else:
        bar = tqdm(total=len(everything), unit="photo", desc="teacher labels")
        masks = list(labels.labels([p for p, _ in everything], bar.update))
        bar.close()
        print(f"teacher ran on {labels.runs} photos; {labels.hits} labels came from the cache")
    items = []
    for (photo, holdout), mask in zip(everything, masks, strict=True):
        alpha = None
        if photo.alpha_path.is_file():
            alpha = np.asarray(Image.open(photo.alpha_path).convert("L"))
        items.append((photo.path.name, photo.read(), mask, holdout, alpha))
    side = args.pack_side or round(TrainSettings(args.model, args.size).size() * 1.25)
    return build_pack(side, items, labels.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__)
    parser.add_argument("--photos", type=Path, help="folder of photos (searched recursively)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pack", type=Path, help="train from this pack instead of --photos")
    parser.add_argument("--holdout", type=Path, help="held-out photos (default: by hash)")
    parser.add_argument("--holdout-percent", type=float, default=10.0)
    parser.add_argument("--composites", type=Path, help="held-out NAME.jpg + NAME.alpha.png")
    parser.add_argument("--labels", type=Path, help="teacher label cache (default OUT/labels)")
    parser.add_argument("--teacher-engine", default="half", help="engine the teacher runs on")
    parser.add_argument("--batch", type=int, default=1, help="teacher batch size")
    parser.add_argument("--pack-side", type=int, help="packed square side (default 1.25x input)")
    parser.add_argument("--pack-quality", type=int, default=90, help="JPEG quality in the pack")
    parser.add_argument("--pack-only", action="store_true", help="stop after writing the pack")
    parser.add_argument(
        "--defer-labels", action="store_true", help="pack uncached photos unlabelled"
    )
    parser.add_argument("--model", default=TrainSettings.model)
    parser.add_argument("--size", type=int, default=0, help="training input (default: model's)")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--eval-every", type=int, default=TrainSettings.eval_every)
    parser.add_argument("--minutes", type=float, default=0.0, help="training time budget")
    parser.add_argument("--workers", type=int, default=TrainSettings.workers)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if (args.photos is None) == (args.pack is None):
        parser.error("give either --photos or --pack")
    if args.threads:
        torch.set_num_threads(args.threads)

    args.out.mkdir(parents=True, exist_ok=True)
    if args.pack:
        pack = load_pack(args.pack)
        if not pack.labelled.all():
            labels = teacher_labels(args.out / "labels", args.teacher_engine, args.batch)
            done = label_pack(pack, labels.teacher, labels.tag, max(args.batch, 16))
            save_pack(pack, args.out / "pack.npz")
            print(f"labelled {done} photos of the pack with {labels.tag}")
    else:
        pack = label_and_pack(args)
        size = save_pack(pack, args.out / "pack.npz", args.pack_quality)
        print(f"wrote {args.out / 'pack.npz'}: {len(pack)} photos, {size / 1e6:.1f} MB")
    if args.pack_only:
        return 0

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    settings = TrainSettings(
        model=args.model,
        input_size=args.size,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        workers=args.workers,
        minutes=args.minutes,
    )
    started = time.perf_counter()
    state = train(pack, args.out, settings, device, progress=not args.no_progress)
    state["train_seconds_this_run"] = round(time.perf_counter() - started, 1)

    model = build_model(settings.model, args.out / BEST)
    meta = {"model": settings.model, "input_size": str(settings.size()), "teacher": pack.teacher}
    shipped = args.out / f"{settings.model}.safetensors"
    digest = export_student(model, shipped, meta)
    report = evaluate_pack(model, pack, settings.model, settings.size(), device)
    report.update(state=state, checkpoint=str(shipped), sha256=digest, device=str(device))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "state"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
