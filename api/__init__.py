"""The HTTP API: an app factory, one blueprint per resource. Never imports torch."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from api.errors import register_error_handlers
from api.services import build_services
from api.uploads import InMemoryUploadRequest
from storage.settings import StorageSettings

DEFAULTS: dict[str, Any] = {
    "MAX_CONTENT_LENGTH": 25 * 1024 * 1024,
    "DEFAULT_MAX_SIZE": 2048,
    "SYNC_WAIT_SECONDS": 30.0,
    "MODEL_ID": "isnet-general-use",
    "STORAGE": None,  # StorageSettings; from the environment when None
    "ENQUEUE": None,  # callable(job_id); Celery's send_task when None
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.request_class = InMemoryUploadRequest
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config["MODEL_ID"] = os.environ.get("CUTOUT_MODEL", DEFAULTS["MODEL_ID"])
        app.config["SYNC_WAIT_SECONDS"] = float(
            os.environ.get("CUTOUT_SYNC_WAIT", DEFAULTS["SYNC_WAIT_SECONDS"])
        )
    else:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    storage = app.config["STORAGE"] or StorageSettings.from_env()
    app.extensions["cutout"] = build_services(
        storage, app.config["MODEL_ID"], app.config["ENQUEUE"]
    )

    from api import files, health, jobs

    app.register_blueprint(jobs.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(health.bp)
    register_error_handlers(app)
    return app
