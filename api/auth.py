"""``Authorization: Bearer <key>`` on the job endpoints; a job belongs to the key that made it.

Another key asking for it gets the same 404 as an unknown job, so ids leak nothing. With
auth off (local use) every caller is anonymous and sees every anonymous job.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, current_app, g, request

from api.api_keys import hash_key, parse_keys
from api.errors import ApiError
from api.services import services
from jobs.record import JobRecord

PROTECTED_BLUEPRINTS = frozenset({"jobs", "cancel", "events"})


def config_from_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Auth is on unless ``CUTOUT_AUTH=off``; then ``CUTOUT_API_KEYS`` must name a key."""
    env = dict(os.environ if env is None else env)
    required = env.get("CUTOUT_AUTH", "on").strip().lower() not in ("off", "0", "false", "no")
    keys = parse_keys(env.get("CUTOUT_API_KEYS", ""))
    if required and not keys:
        raise RuntimeError(
            "CUTOUT_AUTH is on but CUTOUT_API_KEYS names no key: make one with "
            "`python -m api.api_keys new NAME`, or set CUTOUT_AUTH=off for local use"
        )
    return {"AUTH_REQUIRED": required, "API_KEYS": keys}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def authenticate() -> None:
    """Sets ``g.owner`` (the key's name, or None with auth off) or answers 401."""
    g.owner = None
    if request.blueprint not in PROTECTED_BLUEPRINTS or not current_app.config["AUTH_REQUIRED"]:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send your API key as 'Authorization: Bearer <key>'")
    owner = current_app.config["API_KEYS"].get(hash_key(token.strip()))
    if owner is None:
        raise _unauthorized("unknown API key")
    g.owner = owner


def current_owner() -> str | None:
    return g.get("owner")


def owned_job(job_id: str) -> JobRecord:
    """The caller's job, or 404 whether it is unknown, expired or someone else's."""
    record = services().jobs.get(job_id)
    if record is None or record.owner != current_owner():
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (it may have expired)")
    return record


def install_auth(app: Flask) -> None:
    if not app.config["AUTH_REQUIRED"]:
        app.logger.warning(
            "!!! API keys are OFF (CUTOUT_AUTH=off): anyone who reaches this API can submit "
            "and read every job. Use this for local work only. !!!"
        )
    app.before_request(authenticate)
