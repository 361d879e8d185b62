"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.services import services
from jobs.queue import GPU_QUEUE

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    svc = services()
    checks: dict[str, object] = {}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
        workers = svc.heartbeats.alive(GPU_QUEUE)
        checks["gpu_workers"] = len(workers)
    except Exception as exc:
        checks["redis"] = f"unreachable: {exc}"
        checks["gpu_workers"] = 0
    ready = checks["redis"] == "ok" and checks["gpu_workers"] > 0  # type: ignore[operator]
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )
