"""Errors as ``{"error": {"code", "message"}}`` with the right status, for every failure."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

# Seconds a client is told to wait when Redis (the job store) cannot be reached.
STORE_RETRY_AFTER = 5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(error_body(exc.code, exc.message, **exc.extra)), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            message = f"the request body is larger than the {limit} MB limit"
        return jsonify(error_body(code, message)), status

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _store_unavailable(exc: redis.RedisError):  # type: ignore[no-untyped-def]
        # Raised wherever a view, the rate limiter or the auth layer reaches Redis; the
        # client's socket timeouts bound how long that takes (jobs.services.redis_options).
        app.logger.warning("Redis unreachable: %s", exc)
        body = error_body("store_unavailable", "the job store is unreachable; retry later")
        return jsonify(body), 503, {"Retry-After": str(STORE_RETRY_AFTER)}

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error")
        return jsonify(error_body("internal_error", "an unexpected error occurred")), 500
