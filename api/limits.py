"""Rate limits per API key (Flask-Limiter on Redis) and back-pressure from the ``gpu`` queue.

Limits answer ``429`` with ``Retry-After``; every limited answer carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window resets, as the IETF
draft has it, rather than Flask-Limiter's own epoch-stamped ``X-RateLimit-*``). When
``MAX_QUEUE_DEPTH`` jobs wait on the ``gpu`` queue, submits the result cache cannot answer get
``503`` with ``Retry-After``; the check and the queueing are one atomic admission.

When Redis cannot be reached the limiter fails closed by default: the request gets ``503
store_unavailable`` (as every job endpoint would anyway, without its store).
``CUTOUT_RATE_LIMIT_FAIL=open`` lets such requests through unlimited instead, to whatever
answers them (docs/resilience.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded

from api.auth import current_owner
from api.errors import ApiError, error_body
from api.services import services
from jobs.admission import QueueFull
from jobs.services import redis_options
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
    if "CUTOUT_RATE_LIMIT_FAIL" in env:
        config["RATE_LIMIT_FAIL"] = env["CUTOUT_RATE_LIMIT_FAIL"].strip().lower()
    return config


FAIL_MODES = ("open", "closed")


def fails_open(app: Flask) -> bool:
    mode = app.config["RATE_LIMIT_FAIL"]
    if mode not in FAIL_MODES:
        raise ValueError(f"CUTOUT_RATE_LIMIT_FAIL must be open or closed, not {mode!r}")
    return bool(mode == "open")


def rate_key() -> str:
    """One bucket per API key; per client address when auth is off."""
    owner = current_owner()
    return f"key:{owner}" if owner else f"addr:{request.remote_addr}"


@contextmanager
def queue_admission() -> Iterator[None]:
    """A place on the ``gpu`` queue for the job queued inside, or ``503 queue_full`` when
    ``MAX_QUEUE_DEPTH`` jobs wait there already (or are being let in: ``jobs.admission``).

    Entered by the submit path once the upload is read and the cache has no full answer for
    it, so a full queue still answers cache hits (see ``jobs.submission.submit``)."""
    queue = current_app.config["BACKPRESSURE_QUEUE"]
    limit = current_app.config["MAX_QUEUE_DEPTH"]
    with ExitStack() as held:
        try:
            held.enter_context(services().admission.hold(queue, limit))
        except QueueFull as full:
            raise ApiError(
                503,
                "queue_full",
                f"{full.depth} jobs are waiting; retry later",
                headers={"Retry-After": str(current_app.config["QUEUE_RETRY_AFTER"])},
            ) from None
        yield


def install_limits(app: Flask, storage: StorageSettings) -> Limiter:
    limiter = Limiter(
        key_func=rate_key,
        storage_uri=storage.redis_url,  # limits reads redis+sentinel:// URLs itself
        # Bounded waits, as the job store's (and Sentinel's failover retries); passed on to
        # redis-py, whatever the annotation says.
        storage_options=cast(
            dict[str, str | int],
            {**redis_options(storage), **limiter_options(storage.redis_url)},
        ),
        key_prefix=f"{storage.key_prefix}:ratelimit",
        strategy="fixed-window",
        headers_enabled=False,  # ours below, in the IETF draft's form
        # Closed: the storage's error reaches api/errors.py (503 store_unavailable). Open:
        # Flask-Limiter logs it and lets the request through.
        swallow_errors=fails_open(app),
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
        try:
            current = limiter.current_limit
            if current is None:
                return response
            reset = max(0, int(current.reset_at - time.time()))
        except (redis.ConnectionError, redis.TimeoutError):
            return response  # Redis went away during the request: no headers, no 500
        response.headers["RateLimit-Limit"] = str(current.limit.amount)
        response.headers["RateLimit-Remaining"] = str(current.remaining)
        response.headers["RateLimit-Reset"] = str(reset)
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, reset))
        return response

    return limiter
