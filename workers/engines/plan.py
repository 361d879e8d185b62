"""``python -m workers.engines.plan``: one line saying which engine the gpu worker will run
here and, on a first run, what it will switch to (``make run`` prints it in its banner)."""

from __future__ import annotations

import sys

from workers.engines.first_gate import background_engines
from workers.engines.keys import device_name
from workers.engines.select import auto_order, records_for
from workers.predictor import engine_context
from workers.settings import WorkerSettings


def describe(settings: WorkerSettings) -> str:
    if settings.engine != "auto":
        return f"engine: {settings.engine} (CUTOUT_ENGINE)"
    ctx = engine_context(settings)
    records = records_for(ctx)
    device = device_name(ctx.device)
    if records:
        best = auto_order(records)[0]
        speed = f", {records[best].speedup:.2f}x eager" if best in records else ""
        return f"engine: auto runs {best} (passed the quality gate on {device}{speed})"
    if not settings.background_gate:
        return (
            f"engine: eager (no quality-gate report for {device}; CUTOUT_BACKGROUND_GATE=off: "
            "`make engines` gates the faster ones)"
        )
    return (
        f"engine: eager now (no quality-gate report for {device} yet); the gate runs once in "
        f"the background at low priority ({', '.join(background_engines())}; a few minutes) "
        "and the worker then switches to the fastest engine that passes"
    )


def main() -> int:
    try:
        print(describe(WorkerSettings.from_env()))
    except (FileNotFoundError, ValueError) as exc:  # the worker will say the same, and stop
        print(f"engine: unknown ({exc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
