"""Hash-first submits: ``POST /api/v2/jobs`` with a JSON body naming the photo's SHA-256 and
the options, and no bytes.

A cache hit costs no upload: the finished job comes back at once (``200``), recorded, owned,
limited and idempotent like any submit. Otherwise the answer is ``428 image_required`` and the
client uploads the photo as usual. Only a key that has uploaded those bytes before gets a hit
(``jobs/known_images.py``), so a hash alone reveals nothing a normal submit would not.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, request
from werkzeug.datastructures import MultiDict

from api.auth import current_owner
from api.errors import ApiError
from api.idempotency import fingerprint_of, idempotent
from api.services import services
from api.uploads import parse_options
from api.webhook_url import parse_webhook
from jobs.record import JobRecord
from jobs.submission import submit_by_hash

SHA256 = re.compile(r"[0-9a-f]{64}")


def _form(body: dict[str, Any]) -> MultiDict[str, str]:
    """The JSON options as the multipart form would carry them, for the same checks."""
    form: MultiDict[str, str] = MultiDict()
    for name, value in body.items():
        if name == "image_sha256" or value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        form[name] = str(value)
    return form


def submit_by_hash_from_request() -> JobRecord:
    """The finished job for a cached photo, or ``ApiError(428, "image_required")``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "send a JSON object with image_sha256 and options")
    sha = body.get("image_sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha.lower()):
        raise ApiError(400, "invalid_image_sha256", "image_sha256 must be 64 hex digits (SHA-256)")
    sha = sha.lower()
    options = parse_options(_form(body), current_app.config["DEFAULT_MAX_SIZE"])
    webhook = parse_webhook(_form(body))

    def answer() -> JobRecord:
        model_id = current_app.config["MODEL_ID"]
        record = submit_by_hash(services(), model_id, sha, options, current_owner(), webhook)
        if record is None:  # nothing was made: the idempotency slot is freed for the upload
            raise ApiError(
                428,
                "image_required",
                "the service holds no finished result of this photo for your key: upload it "
                "as multipart 'image'",
            )
        return record

    same = {"options": options.as_dict(), "webhook_url": webhook and webhook.url}
    return idempotent(fingerprint_of(sha, same), answer)
