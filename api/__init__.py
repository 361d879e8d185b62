"""The HTTP API: an app factory, one blueprint per resource. Never imports torch."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from api.errors import register_error_handlers
from api.services import build_services
from api.uploads import InMemoryUploadRequest
from jobs.queue import GPU_QUEUE
from jobs.webhooks.settings import WebhookSettings
from storage.settings import StorageSettings

DEFAULTS: dict[str, Any] = {
    "MAX_CONTENT_LENGTH": 25 * 1024 * 1024,
    "DEFAULT_MAX_SIZE": 2048,
    "SYNC_WAIT_SECONDS": 30.0,
    "MODEL_ID": "isnet-general-use",
    "STORAGE": None,  # StorageSettings; from the environment when None
    "ENQUEUE": None,  # callable(job_id); Celery's send_task when None
    # API keys, limits and webhooks. A test config leaves auth off unless it asks; from the
    # environment it is on (CUTOUT_AUTH, CUTOUT_API_KEYS: see api/auth.py).
    "AUTH_REQUIRED": False,
    "API_KEYS": {},  # sha256 hex of a key → its name, which owns the key's jobs
    "RATE_LIMIT_SUBMIT": "120 per minute",  # per key (per address with auth off)
    "RATE_LIMIT_READ": "1200 per minute",
    "RATE_LIMIT_FAIL": "closed",  # when Redis is unreachable: "closed" (503) or "open"
    "BACKPRESSURE_QUEUE": GPU_QUEUE,
    "MAX_QUEUE_DEPTH": 1000,  # at most this many jobs wait there; submits past it get 503
    "QUEUE_RETRY_AFTER": 30,  # seconds, in the 503's Retry-After
    "WEBHOOKS": None,  # WebhookSettings; from the environment when None
    "NOTIFY": None,  # callable(job_id) queueing a webhook; Celery's send_task when None
    "EVENTS_HEARTBEAT_SECONDS": 15.0,  # a comment on an idle event stream keeps proxies open
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    from api import auth, limits

    app = Flask(__name__)
    app.request_class = InMemoryUploadRequest
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config["MODEL_ID"] = os.environ.get("CUTOUT_MODEL", DEFAULTS["MODEL_ID"])
        app.config["SYNC_WAIT_SECONDS"] = float(
            os.environ.get("CUTOUT_SYNC_WAIT", DEFAULTS["SYNC_WAIT_SECONDS"])
        )
        app.config.update(auth.config_from_env())
        app.config.update(limits.config_from_env())
    else:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    storage = app.config["STORAGE"] or StorageSettings.from_env()
    app.config["WEBHOOKS"] = app.config["WEBHOOKS"] or WebhookSettings.from_env()
    app.extensions["cutout"] = build_services(storage, app.config["ENQUEUE"], app.config["NOTIFY"])

    from api import cancel, demo, effects_module, events, files, health, jobs, metrics, openapi

    app.register_blueprint(jobs.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(effects_module.bp)
    app.register_blueprint(cancel.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(openapi.bp)
    register_error_handlers(app)
    auth.install_auth(app)  # before the limits: they count per key
    limits.install_limits(app, storage)
    metrics.instrument(app, app.extensions["cutout"])
    return app
