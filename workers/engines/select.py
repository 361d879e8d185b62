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


def records_for(ctx: EngineContext) -> dict[str, EngineRecord]:
    key = report_key(device_name(ctx.device), torch.__version__, ctx.model_hash, ctx.size)
    return read_records(ctx.artefact_dir / REPORT_NAME, key)


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
