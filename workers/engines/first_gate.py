"""``python -m workers.engines.first_gate``: the quality gate a gpu worker runs once, in the
background, when it starts with ``CUTOUT_ENGINE=auto`` and finds no report for its device.

It runs at low priority (niced, torch and onnxruntime on half the cores) so the jobs the
worker serves meanwhile on ``eager`` keep the machine; the worker starts it only while it holds
the lock next to the report (one gate per model dir, however many workers). It calibrates
INT8 when that file is missing (CPU only), gates the engines that are cheap to build
(``EngineInfo.background_gate``: not an AOTInductor compile nor a TensorRT build, which
``make engines`` does) and files the verdicts under the worker's own report key (its thread
count read before this process lowers its own), then exits; the worker reads the report and
switches (``workers/engine_switch.py``). Exits 0 once the report is filed, whatever it says.
"""

from __future__ import annotations

import os
import sys

import torch

from workers.calibrate import calibrate_int8
from workers.engines.base import EngineContext
from workers.engines.check import markdown
from workers.engines.gate import run_gate
from workers.engines.keys import device_name
from workers.engines.ort import int8_path
from workers.engines.registry import ENGINES
from workers.engines.report import REPORT_NAME, report_key, write_records
from workers.photos import CALIBRATION_PHOTOS, GATE_PHOTOS, load_photos
from workers.predictor import engine_context
from workers.settings import WorkerSettings

NICENESS = 19


def background_engines() -> list[str]:
    """The engines a first-run gate holds to eager."""
    return [n for n, info in ENGINES.items() if info.background_gate and n != "eager"]


def gate_threads() -> int:
    """Half the cores, at least one: the other half keeps serving."""
    return max(1, (os.cpu_count() or 2) // 2)


def main() -> int:
    ctx = engine_context(WorkerSettings.from_env())
    device = device_name(ctx.device)  # the worker's key: read before the threads are lowered
    key = report_key(device, torch.__version__, ctx.model_hash, ctx.size)
    os.nice(NICENESS)
    torch.set_num_threads(gate_threads())
    names = background_engines()
    print(
        f"first-run gate: holding {', '.join(names)} to eager on {device} at low priority "
        f"({gate_threads()} thread(s))",
        flush=True,
    )
    if ctx.device.type == "cpu" and "int8" in names:
        calibrate_if_missing(ctx)
    run = run_gate(ctx, names, load_photos(GATE_PHOTOS))
    print(markdown(run, device, ctx.size), flush=True)
    path = ctx.artefact_dir / REPORT_NAME
    write_records(path, key, run.records())
    print(f"first-run gate: filed under {key!r} in {path}", flush=True)
    return 0


def calibrate_if_missing(ctx: EngineContext) -> None:
    """INT8's calibration (a minute or two on a CPU), unless its file is there already; a
    failure leaves int8 out of the gate (it reports the engine as skipped) rather than the
    whole gate."""
    if int8_path(ctx).is_file():
        return
    try:
        path = calibrate_int8(ctx, load_photos(CALIBRATION_PHOTOS))
    except Exception as exc:  # noqa: BLE001 (any failure: the other engines are still gated)
        print(f"first-run gate: INT8 calibration failed ({exc!r}); int8 is left out", flush=True)
        return
    print(f"first-run gate: calibrated {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
