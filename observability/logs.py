"""Structured logs: one JSON object per line, for the API (gunicorn), the workers and the runner.

Fields passed as ``extra=`` (job_id, batch_id, stage, timings, ...) become keys of the object.
The level comes from ``CUTOUT_LOG_LEVEL`` (default INFO). Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_level(env: Mapping[str, str] | None = None, default: str | int = "INFO") -> str:
    """``CUTOUT_LOG_LEVEL``, else ``default`` (a name, or a number as Celery passes it)."""
    if isinstance(default, int):
        default = logging.getLevelName(default)
    level = str((os.environ if env is None else env).get("CUTOUT_LOG_LEVEL") or default).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"CUTOUT_LOG_LEVEL: unknown level {level!r}")
    return level


def configure(level: str) -> None:
    """JSON lines on stderr from the root logger (Celery's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own logs and the app's as JSON lines on stderr.

    The access log is left at WARNING: the API logs each request itself, with its endpoint.
    """
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"level": level, "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def log_job_stage(
    stage: str,
    job_id: str,
    batch_id: str,
    timings: Mapping[str, Any],
    error_code: str | None = None,
    **fields: Any,
) -> None:
    """One JSON line per job stage on ``cutout.jobs``; failures at WARNING."""
    extra = {"stage": stage, "job_id": job_id, "batch_id": batch_id, "timings": dict(timings)}
    if error_code:
        extra["error_code"] = error_code
    level = logging.WARNING if error_code else logging.INFO
    logging.getLogger("cutout.jobs").log(
        level, "job %s %s", job_id, stage, extra={**extra, **fields}
    )
