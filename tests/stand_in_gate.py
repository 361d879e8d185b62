"""``python -m tests.stand_in_gate``: a cheap stand-in for ``workers.engines.first_gate``.

Files what a gate would (a passed ``eager`` and a passed ``onnxruntime`` at 3x, under the key
the worker from this environment reads) without measuring anything, and leaves the artefact a
gate leaves (the ONNX export it built onnxruntime from), after a short pause so
two workers' gates would overlap if the lock let them; each run appends its pid to
``stand-in-gate-runs`` in the model dir, so a test can count the gates that ran.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

import torch

from workers.engines.keys import device_name
from workers.engines.onnx_export import exported_fp32
from workers.engines.report import REPORT_NAME, EngineRecord, report_key, write_records
from workers.predictor import engine_context
from workers.settings import WorkerSettings

RUNS_NAME = "stand-in-gate-runs"


def record(engine: str, speedup: float) -> EngineRecord:
    return EngineRecord(
        engine=engine,
        passed=True,
        min_iou=0.99,
        iou_mean=1.0,
        iou_min=1.0,
        mae=0.0,
        ms_per_image=10 / speedup,
        speedup=speedup,
        photos=8,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def main() -> int:
    ctx = engine_context(WorkerSettings.from_env())
    with (ctx.artefact_dir / RUNS_NAME).open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("STAND_IN_GATE_SECONDS", "0.5")))
    exported_fp32(ctx)
    key = report_key(device_name(ctx.device), torch.__version__, ctx.model_hash, ctx.size)
    write_records(
        ctx.artefact_dir / REPORT_NAME, key, [record("eager", 1.0), record("onnxruntime", 3.0)]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
