"""``python -m workers.engines.check``: the quality gate, at the model's real input size.

Runs eager and every other engine that can run here on the gate's photos, prints a markdown
table (IoU at 0.5 and mean absolute error against eager, median ms per image at batch 1),
files the results in the model dir's ``engines-report.json`` for ``auto`` to choose from, and
exits 1 when an engine that ran missed its bar.

``--size 768 --reference-size 1024`` gates a reduced input for adaptive quality instead: every
engine that takes any input size, eager included, runs at 768 px and is held to eager at
1024 px; a worker runs reduced under load only with an engine that passed this.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import torch

from workers.engines.gate import GateRun, run_gate
from workers.engines.keys import device_name
from workers.engines.registry import ENGINES
from workers.engines.report import REPORT_NAME, report_key, write_records
from workers.photos import GATE_PHOTOS, load_photos
from workers.predictor import engine_context
from workers.settings import WorkerSettings


def markdown(run: GateRun, device: str, size: int) -> str:
    day = datetime.now(UTC).date().isoformat()
    against = f" against eager at {run.reference_size} px" if run.reference_size else ""
    lines = [
        f"Quality gate on {device}, {size}x{size}{against}, {day}, "
        f"{len(run.results[0].ious)} photos",
        "",
        "| engine | bar (mean IoU) | mean IoU | worst IoU | MAE | ms/img (batch 1) | vs eager "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    eager_ms = run.results[0].ms_per_image
    for index, r in enumerate(run.results):
        verdict = "reference" if index == 0 else ("passed" if r.passed else "REFUSED")
        lines.append(
            f"| {r.engine} | {r.min_iou:.2f} | {r.iou_mean:.4f} | {r.iou_min:.4f} | {r.mae:.5f} "
            f"| {r.ms_per_image:.1f} | {eager_ms / r.ms_per_image:.2f}x | {verdict} |"
        )
    lines += [f"| {name} | | | | | | | skipped: {why} |" for name, why in run.skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.engines.check", description=__doc__)
    parser.add_argument(
        "--engines",
        default=",".join(n for n in ENGINES if n != "eager"),
        help="comma list of engines to hold to eager (default: all)",
    )
    parser.add_argument("--size", type=int, help="input size (default: the model's)")
    parser.add_argument(
        "--reference-size",
        type=int,
        help="hold every engine at --size to eager at this size (gates a reduced input)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not update the report")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {', '.join(ENGINES)}")

    settings = WorkerSettings.from_env()
    ctx = engine_context(settings, args.size)
    device = device_name(ctx.device)
    run = run_gate(ctx, names, load_photos(GATE_PHOTOS), args.reference_size)
    print(markdown(run, device, ctx.size))
    if not args.no_save:
        path = ctx.artefact_dir / REPORT_NAME
        key = report_key(device, torch.__version__, ctx.model_hash, ctx.size, run.reference_size)
        write_records(path, key, run.records())
        print(f"\nfiled under {key!r} in {path}")
    return 0 if all(r.passed for r in run.results) else 1


if __name__ == "__main__":
    sys.exit(main())
