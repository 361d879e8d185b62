"""Rate limits per API key (Flask-Limiter on Redis) and back-pressure from the ``gpu`` queue.

Limits answer ``429`` with ``Retry-After``; every limited answer carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window resets, as the IETF
draft has it, rather than Flask-Limiter's own epoch-stamped ``X-RateLimit-*``). When more than
``MAX_QUEUE_DEPTH`` jobs wait on the ``gpu`` queue, submits the result cache cannot answer get
``503`` with ``Retry-After``.
"""

from __future__ import annotations

import os
import time
from typing import Any, cast

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded

from api.auth import current_owner
from api.errors import ApiError, error_body
from api.services import services
from storage.redis_client import limiter_options
from storage.settings import StorageSettings

SUBMIT_BLUEPRINTS = ("jobs",)
READ_BLUEPRINTS = ("jobs", "cancel", "events")


def config_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if env is None else env)
    config: dict[str, Any] = {}
    for name, key in (("SUBMIT", "RATE_LIMIT_SUBMIT"), ("READ", "RATE_LIMIT_READ")):
        if f"CUTOUT_RATE_LIMIT_{name}" in env:
            config[key] = env[f"CUTOUT_RATE_LIMIT_{name}"]
    if "CUTOUT_MAX_QUEUE_DEPTH" in env:
        config["MAX_QUEUE_DEPTH"] = int(env["CUTOUT_MAX_QUEUE_DEPTH"])
    return config


def rate_key() -> str:
    """One bucket per API key; per client address when auth is off."""
    owner = current_owner()
    return f"key:{owner}" if owner else f"addr:{request.remote_addr}"


def refuse_when_queue_is_full() -> None:
    """Raises ``503 queue_full`` when the ``gpu`` queue is too deep for another job.

    Called by the submit path once the upload is read and the cache has no full answer for
    it, so a full queue still answers cache hits (see ``jobs.submission.submit``)."""
    queue = current_app.config["BACKPRESSURE_QUEUE"]
    depth = services().queue.depth(queue)
    if depth > current_app.config["MAX_QUEUE_DEPTH"]:
        raise ApiError(
            503,
            "queue_full",
            f"{depth} jobs are waiting; retry later",
            headers={"Retry-After": str(current_app.config["QUEUE_RETRY_AFTER"])},
        )


def install_limits(app: Flask, storage: StorageSettings) -> Limiter:
    limiter = Limiter(
        key_func=rate_key,
        storage_uri=storage.redis_url,  # limits reads redis+sentinel:// URLs itself
        storage_options=limiter_options(storage.redis_url),
        key_prefix=f"{storage.key_prefix}:ratelimit",
        strategy="fixed-window",
        headers_enabled=False,  # ours below, in the IETF draft's form
    )
    for name in SUBMIT_BLUEPRINTS:
        limiter.limit(app.config["RATE_LIMIT_SUBMIT"], methods=["POST"], scope="submit")(
            cast(Blueprint, app.blueprints[name])
        )
    for name in READ_BLUEPRINTS:
        limiter.limit(app.config["RATE_LIMIT_READ"], methods=["GET", "DELETE"], scope="read")(
            cast(Blueprint, app.blueprints[name])
        )
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded):  # type: ignore[no-untyped-def]
        return jsonify(
            error_body("rate_limited", f"rate limit exceeded ({exc.limit.limit}); slow down")
        ), 429

    @app.after_request
    def _rate_limit_headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        reset = max(0, int(current.reset_at - time.time()))
        response.headers["RateLimit-Limit"] = str(current.limit.amount)
        response.headers["RateLimit-Remaining"] = str(current.remaining)
        response.headers["RateLimit-Reset"] = str(reset)
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, reset))
        return response

    return limiter
