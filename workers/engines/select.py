"""Which engine a worker runs: the one asked for, or for ``auto`` the one the gate chose.

``auto`` reads the gate's report for this device, torch version, weights and input size, and
tries the engines that passed, fastest first; one that cannot be built here (a package or a
calibrated file gone since) is skipped with a log line. ``eager`` closes the list. With no
report yet, ``auto`` runs ``eager``: an engine the gate has not checked on this device is never
chosen (run ``python -m workers.engines.check`` once per device to let ``auto`` go faster).
"""

from __future__ import annotations

import logging

import torch

from workers.engines.base import Engine, EngineContext, EngineUnavailable
from workers.engines.keys import device_name
from workers.engines.registry import ENGINES, build_engine
from workers.engines.report import REPORT_NAME, EngineRecord, read_records, report_key

log = logging.getLogger("cutout.engines")


def records_for(ctx: EngineContext, size: int | None = None) -> dict[str, EngineRecord]:
    """The gate's records for this device, torch and weights: at ``ctx.size``, or with
    ``size`` those of that (reduced) input held to eager at ``ctx.size``."""
    key = report_key(
        device_name(ctx.device), torch.__version__, ctx.model_hash, size or ctx.size, ctx.size
    )
    return read_records(ctx.artefact_dir / REPORT_NAME, key)


def reduced_input_refusal(engine: Engine, ctx: EngineContext, size: int) -> str | None:
    """Why ``engine`` may not run at the reduced input ``size`` here, or None when it may: it
    takes any input size and the gate passed it at ``size`` against eager at full size."""
    info = ENGINES.get(engine.name)
    if info is None or not info.any_input_size:
        return f"engine {engine.name!r} runs at the input shapes it was built for only"
    if not 0 < size < ctx.size:
        return f"{size} px is not a reduced input (the model's is {ctx.size} px)"
    record = records_for(ctx, size).get(engine.name)
    command = f"python -m workers.engines.check --size {size} --reference-size {ctx.size}"
    if record is None:
        return f"the quality gate has not held {engine.name} at {size} px here: run `{command}`"
    if not record.passed:
        return (
            f"{engine.name} at {size} px failed the quality gate "
            f"(mean IoU {record.iou_mean:.4f} < {record.min_iou:.2f})"
        )
    return None


def auto_order(records: dict[str, EngineRecord]) -> list[str]:
    """Engines that passed the gate, fastest first (by their speed-up over eager measured in
    the same gate run), then ``eager``; never an unchecked one."""
    passed = sorted(
        (r for r in records.values() if r.passed and r.engine in ENGINES),
        key=lambda r: -r.speedup,
    )
    order = [r.engine for r in passed]
    return order if "eager" in order else [*order, "eager"]


def select_engine(requested: str, ctx: EngineContext) -> Engine:
    """Build the requested engine. A named engine that cannot run here raises
    ``EngineUnavailable`` (the worker refuses to start); ``auto`` falls back as described."""
    records = records_for(ctx)
    if requested != "auto":
        record = records.get(requested)
        if record is not None and not record.passed:
            log.warning(
                "engine %s runs as asked although it failed the quality gate (IoU %.4f < %.2f)",
                requested,
                record.iou_mean,
                record.min_iou,
            )
        return build_engine(requested, ctx)
    if not records:
        log.info("no gate report for this device yet: auto runs eager")
    for name in auto_order(records):
        if name == "eager":  # the reference needs no gate and always builds
            break
        try:
            engine = build_engine(name, ctx)
        except EngineUnavailable as exc:
            log.warning("auto skips %s: %s", name, exc)
            continue
        log.info("auto chose %s", name)
        return engine
    log.info("auto chose eager")
    return build_engine("eager", ctx)
