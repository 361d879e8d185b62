"""The student against its teacher, model only, in one run: ms per image (wall) and CPU ms per
image for each engine and batch size, with the speed-up over IS-Net on eager and on its
fastest engine here (int8 on a CPU, half on a GPU) measured in the same run.

    python -m bench.student --checkpoint OUT/cutout-student.safetensors           # CPU
    CUTOUT_DEVICE=cuda python -m bench.student --checkpoint F --batches 1,32 --engines eager,half

Rows are timed round-robin (``--repeats`` rounds, median), so load on a shared machine touches
every row alike. Each model runs at its config's input size on a real photo. A missing INT8
calibration is made first (``workers.calibrate``: minutes for IS-Net on a CPU, once per model
dir). Without ``--checkpoint`` the student has random weights (its speed does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import torch

from bench.timing import sync
from workers.engines import Engine, EngineContext, EngineUnavailable, build_engine
from workers.engines.keys import device_name
from workers.engines.ort import int8_path
from workers.photos import CALIBRATION_PHOTOS, load_photo, load_photos
from workers.predictor import engine_context, preprocess
from workers.settings import WorkerSettings

TEACHER = "isnet-general-use"


@dataclass
class Row:
    model: str
    engine: str
    batch: int
    run: Engine
    batch_input: torch.Tensor
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def ms(self, times: list[float]) -> float:
        return statistics.median(times) * 1000 / self.batch


def context(settings: WorkerSettings) -> EngineContext:
    ctx = engine_context(settings)
    if ctx.device.type == "cpu" and not int8_path(ctx).is_file():
        from workers.calibrate import calibrate_int8

        start = time.perf_counter()
        calibrate_int8(ctx, load_photos(CALIBRATION_PHOTOS))
        print(f"(calibrated int8 for {ctx.config.model_id} in {time.perf_counter() - start:.0f} s)")
    return ctx


def build_rows(
    settings: dict[str, WorkerSettings], engines: list[str], batches: list[int]
) -> tuple[list[Row], dict[str, str]]:
    rows, skipped = [], {}
    photo = torch.from_numpy(load_photo("astronaut")).permute(2, 0, 1)
    for model, s in settings.items():
        ctx = context(s)
        one = preprocess([photo], ctx.config, ctx.size, ctx.device)
        for name in engines:
            try:
                engine = build_engine(name, replace(ctx, batch_sizes=tuple(batches)))
            except EngineUnavailable as exc:
                skipped[f"{model} {name}"] = str(exc)
                continue
            for batch in batches:
                rows.append(Row(model, name, batch, engine, one.expand(batch, -1, -1, -1)))
    return rows, skipped


def time_rows(rows: list[Row], repeats: int) -> None:
    for row in rows:  # one untimed call each: lazy initialisation, CUDA graphs, caches
        row.run.predict(row.batch_input)
        sync(row.run.device)
    for _ in range(repeats):
        for row in rows:
            wall, cpu = time.perf_counter(), time.process_time()
            row.run.predict(row.batch_input)
            sync(row.run.device)
            row.wall.append(time.perf_counter() - wall)
            row.cpu.append(time.process_time() - cpu)


def table(rows: list[Row], fastest: str) -> str:
    def base(engine: str, batch: int) -> float | None:
        match = [r for r in rows if r.model == TEACHER and r.engine == engine and r.batch == batch]
        return match[0].ms(match[0].wall) if match else None

    lines = [
        f"| model | engine | batch | ms/img | CPU ms/img | vs IS-Net eager | vs IS-Net {fastest} |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ms = r.ms(r.wall)
        ratios = [base(e, r.batch) for e in ("eager", fastest)]
        cells = [f"{b / ms:.1f}x" if b else "—" for b in ratios]
        lines.append(
            f"| {r.model} | {r.engine} | {r.batch} | {ms:.1f} | {r.ms(r.cpu):.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.student", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="the student's weights")
    parser.add_argument("--models", default="cutout-student", help="comma list of students")
    parser.add_argument("--engines", help="comma list (default: CPU eager,half,onnxruntime,int8)")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, help="torch threads (1 on a busy machine: two spin on each other)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = replace(WorkerSettings.from_env(), adaptive_queue_depth=0)
    device = torch.device(base.torch_device())
    default = "eager,half" if device.type == "cuda" else "eager,half,onnxruntime,int8"
    engines = (args.engines or default).split(",")
    batches = [int(b) for b in args.batches.split(",")]
    models = {TEACHER: replace(base, model=TEACHER, checkpoint=None)}
    for name in args.models.split(","):
        weights = args.checkpoint or _random_student(name, base.model_dir)
        models[name] = replace(base, model=name, checkpoint=weights)
    rows, skipped = build_rows(models, engines, batches)
    time_rows(rows, args.repeats)
    fastest = "half" if device.type == "cuda" else "int8"
    print(
        f"{date.today()} · {device_name(device)} · torch {torch.__version__} · model only, "
        f"median of {args.repeats} round-robin rounds\n"
    )
    print(table(rows, fastest))
    for what, why in skipped.items():
        print(f"\nskipped {what}: {why}")
    return 0


def _random_student(model: str, model_dir: Path) -> Path:
    from training.checkpoint import export_student
    from workers.models import build_model

    path = model_dir / f"{model}-random.safetensors"
    if not path.is_file():
        export_student(build_model(model), path, {"model": model, "weights": "random"})
    return path


if __name__ == "__main__":
    raise SystemExit(main())
