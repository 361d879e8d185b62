"""The OpenAPI 3.1 document of the whole API, served at ``/api/v2/openapi.json``.

Written as data and kept true by tests: real answers are validated against it, and
schemathesis drives the live app from it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from api.uploads import MAX_OUTPUT_SIDE
from contract.effects import CLIENT_EFFECTS, EFFECT_NAMES, OUTPUT_FORMATS
from contract.options import (
    CHANNELS,
    DEFAULT_BLUR_STRENGTH,
    MAX_BLUR_STRENGTH,
    MAX_CANVAS_SIDE,
    REFINE,
)
from jobs.public import PUBLIC_FIELDS, WEBHOOK_FIELDS

bp = Blueprint("openapi", __name__)

JSON = "application/json"
NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("Error")}},
    }
    if headers:
        answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return answer


def _job(description: str, *headers: str) -> dict[str, Any]:
    answer = _error(description, *headers)
    answer["content"] = {JSON: {"schema": _ref("Job")}}
    return answer


RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
LIMITED = {
    "401": _error("no or unknown API key (`unauthorized`)", "WWW-Authenticate"),
    "429": _error("rate limit exceeded (`rate_limited`)", "Retry-After", *RATE_HEADERS),
}
# Every endpoint that reads or writes jobs needs Redis (api/errors.py; docs/resilience.md).
STORE_UNAVAILABLE = "Redis, the job store, cannot be reached (`store_unavailable`)"
STORE_DOWN = {"503": _error(f"{STORE_UNAVAILABLE}; retry after Retry-After", "Retry-After")}
SUBMIT_ERRORS = {
    "400": _error(
        "a missing or empty image, an option out of range or malformed (`invalid_background`, "
        "`invalid_crop`, `invalid_size`, `invalid_position`, `invalid_channels`, "
        "`invalid_refine`, …), a bad webhook URL or Idempotency-Key (see `error.code`); an "
        "error about the `background_image` part says so in `field`"
    ),
    "409": _error(
        "the Idempotency-Key was used for a different request, or its first request is "
        "still being queued",
        "Retry-After",
    ),
    "413": _error("the body is over the size limit (`payload_too_large`)"),
    "415": _error("not a JPEG, PNG, WebP or HEIC image (`unsupported_media_type`)"),
    "422": _error(
        "the image is unreadable or cut short, too large or too small "
        "(`invalid_image`, `image_too_large`, `image_too_small`)"
    ),
    "503": _error(
        "the gpu queue is too deep for a job the result cache cannot answer (`queue_full`), "
        "the broker is down (`queue_unavailable`), or " + STORE_UNAVAILABLE,
        "Retry-After",
    ),
    **LIMITED,
}
SUBMIT_FIELDS: dict[str, Any] = {
    "image": {"type": "string", "format": "binary", "description": "the photo"},
    "effects": {
        "type": "string",
        "description": f"comma list of {', '.join(EFFECT_NAMES)} (default: all four)",
    },
    "max_size": {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_SIDE, "default": 2048},
    "format": {
        "type": "string",
        "enum": list(OUTPUT_FORMATS),
        "description": "default `webp`; `png` with `client_effects` (the only format it allows)",
    },
    "client_effects": {
        "type": "string",
        "description": f"comma list of {', '.join(CLIENT_EFFECTS)}: effects the client renders "
        "itself with the browser module (`/static/wasm/manifest.json` names it; "
        "docs/browser-effects.md) from the `color` output, to the server's pixels. The server "
        "skips them and always makes `color`; the format is `png` (any other is "
        "`invalid_client_effects`)",
    },
    "preview": {
        "type": "boolean",
        "default": False,
        "description": "publish small WebP previews of the effects (`preview` in the job) while "
        "the job still runs, before the full outputs",
    },
    "webhook_url": {
        "type": "string",
        "format": "uri",
        "maxLength": 2048,
        "description": "POSTed the finished job, signed per Standard Webhooks",
    },
    "background": {
        "type": "string",
        "pattern": "^(transparent|blur|image|#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?)$",
        "default": "transparent",
        "description": "what goes behind the subject in every effect: `transparent`, a colour "
        "`#rrggbb` or `#rrggbbaa`, `blur` (the photo itself, blurred) or `image` (the "
        "`background_image` part); composited in linear light (`invalid_background`)",
    },
    "blur_strength": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_BLUR_STRENGTH,
        "default": DEFAULT_BLUR_STRENGTH,
        "description": "with `background=blur`: the blur's sigma is strength/50 % of the long edge",
    },
    "background_image": {
        "type": "string",
        "format": "binary",
        "description": "a background image (JPEG, PNG, WebP or HEIC, checked like `image`), "
        "scaled to cover the output; cached by its hash",
    },
    "crop": {
        "type": "string",
        "enum": ["none", "subject"],
        "default": "none",
        "description": "`subject`: crop the outputs to the subject's box (a photo without a "
        "subject fails with `no_subject`) (`invalid_crop`)",
    },
    "crop_margin": {
        "type": "string",
        "default": "0",
        "description": "with `crop=subject`: one, two or four lengths (top right bottom left), "
        "each `Npx` (at most 500) or `N%` of the subject's size (at most 50)",
    },
    "size": {
        "type": "string",
        "pattern": "^[0-9]+x[0-9]+$",
        "description": "a fixed output size `WxH` (each side 1 to "
        f"{MAX_CANVAS_SIDE}): the (cropped) photo is fitted inside and placed by `position` "
        "(`invalid_size`)",
    },
    "position": {
        "type": "string",
        "default": "center",
        "description": "with `size`: `center`, `top`, `bottom`, `left`, `right`, `X%` or "
        "`X% Y%` of the free space left of and above the subject (`invalid_position`)",
    },
    "channels": {
        "type": "string",
        "enum": list(CHANNELS),
        "default": "rgba",
        "description": "`alpha`: only the mask, as a single-channel PNG (the effects are not "
        "made) (`invalid_channels`)",
    },
    "refine": {
        "type": "string",
        "enum": list(REFINE),
        "default": "none",
        "description": "`edges`: the mask refined against the photo at the output size (a fast "
        "guided filter), for hair and fur on large photos (`invalid_refine`)",
    },
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "the same key and request within 24 h answer the same job",
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _submit_body(**more: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": {**SUBMIT_FIELDS, **more}, "required": ["image"]}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _hash_first_body() -> dict[str, Any]:
    """The upload, or (JSON) the photo's SHA-256 and the options without the bytes."""
    options = {name: field for name, field in SUBMIT_FIELDS.items() if name != "image"}
    effects = options["effects"]
    options["effects"] = {
        "oneOf": [effects, {"type": "array", "items": {"enum": list(EFFECT_NAMES)}}],
        "description": effects["description"],
    }
    schema = {
        "type": "object",
        "properties": {
            "image_sha256": {
                "type": "string",
                "pattern": "^[0-9a-fA-F]{64}$",
                "description": "the photo's SHA-256 (hex); answered from the result cache "
                "only for a key that has uploaded those bytes before (docs/events.md)",
            },
            **options,
        },
        "required": ["image_sha256"],
    }
    body = _submit_body()
    body["content"][JSON] = {"schema": schema}
    return body


def _schemas() -> dict[str, Any]:
    output = {
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "content_type": {"type": "string"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
        },
        "required": ["url", "content_type", "width", "height"],
    }
    attempt = {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer"},
            "at": {"type": "string"},
            "status": {"type": ["integer", "null"]},
            "error": NULLABLE_STRING,
            "ms": {"type": "number"},
        },
    }
    webhook = {
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "state": {"enum": ["pending", "retrying", "delivered", "failed", "gone"]},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]},
            "last_error": NULLABLE_STRING,
            "delivered_at": NULLABLE_STRING,
            "next_attempt_at": NULLABLE_STRING,
            "history": {"type": "array", "items": attempt},
        },
        "required": list(WEBHOOK_FIELDS),
    }
    code_message = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
    box = {
        "type": "object",
        "properties": {side: {"type": "integer"} for side in ("left", "top", "width", "height")},
        "required": ["left", "top", "width", "height"],
    }
    job = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["queued", "processing", "succeeded", "failed", "canceled"]},
            "created_at": {"type": "string"},
            "started_at": NULLABLE_STRING,
            "completed_at": NULLABLE_STRING,
            "options": {
                "type": "object",
                "properties": {
                    "effects": {"type": "array", "items": {"enum": list(EFFECT_NAMES)}},
                    "max_size": {"type": "integer"},
                    "format": {"enum": list(OUTPUT_FORMATS)},
                    "preview": {"type": "boolean"},
                    **{
                        name: {"type": "string"}
                        for name in (
                            "background",
                            "blur_strength",
                            "background_image_sha256",
                            "crop",
                            "crop_margin",
                            "size",
                            "position",
                            "channels",
                            "refine",
                        )
                    },  # fmt: skip
                },
            },
            "model": {"type": "string"},
            "batch_size": {"type": ["integer", "null"]},
            "model_input": {
                "type": ["integer", "null"],
                "description": "the side of the square the model saw the photo at: the "
                "model's own input, or a smaller one when the gpu queue was deep (adaptive "
                "quality); null for a job no worker ran",
            },
            "cache": {
                "enum": ["hit", "joined", "miss", "partial", None],
                "description": "how the result cache served the job: answered in full (hit), "
                "attached to an identical running job (joined), or queued to compute every "
                "output (miss) or the missing ones (partial); null until known",
            },
            "computed": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "the outputs this job's worker computed (the rest came from the "
                "cache); null for a job no worker ran",
            },
            "error": {"oneOf": [{"type": "null"}, code_message]},
            "outputs": {"type": "object", "additionalProperties": output},
            "foreground": {
                "oneOf": [{"type": "null"}, box],
                "description": "the subject's box in output pixels (the mask's pixels at least "
                "5 % opaque; width and height 0 when there are none); null until the job "
                "succeeded",
            },
            "preview": {
                "oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": output}],
                "description": "with `preview=true`: a small WebP of each effect the worker "
                "computes, here while the job is still processing; null until then",
            },
            "timings": {"type": "object", "additionalProperties": {"type": "number"}},
            "webhook": webhook,
        },
        # Every field public_job writes, whatever the job's state ("webhook" only when asked).
        "required": [*PUBLIC_FIELDS, "outputs", "foreground", "preview", "timings"],
    }
    error = {"type": "object", "properties": {"error": code_message}, "required": ["error"]}
    return {"Job": job, "Error": error}


def _headers() -> dict[str, Any]:
    def integer(description: str) -> dict[str, Any]:
        return {"description": description, "schema": {"type": "integer", "minimum": 0}}

    return {
        "Location": {"description": "the job", "schema": {"type": "string"}},
        "Retry-After": integer("seconds to wait before trying again"),
        "RateLimit-Limit": integer("requests allowed in the window"),
        "RateLimit-Remaining": integer("requests left in the window"),
        "RateLimit-Reset": integer("seconds until the window resets"),
        "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}},
    }


def _paths() -> dict[str, Any]:
    found = _error("unknown or expired job, or another key's (`job_not_found`)")
    return {
        "/api/v2/jobs": {
            "post": {
                "summary": "Queue a job, or answer it from the result cache (a JSON body: by "
                "the photo's hash alone, without its bytes)",
                "operationId": "createJob",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": _hash_first_body(),
                "responses": {
                    "200": _job(
                        "already succeeded: every output was in the result cache "
                        "(`cache: hit`), or an Idempotency-Key repeat whose job has succeeded",
                        "Location",
                        *RATE_HEADERS,
                    ),
                    "202": _job(
                        "queued or attached to an identical running job (or the job an "
                        "earlier request made)",
                        "Location",
                        *RATE_HEADERS,
                    ),
                    **SUBMIT_ERRORS,
                    "428": _error(
                        "a hash-first (JSON) submit the result cache cannot answer for this "
                        "key (`image_required`): upload the photo"
                    ),
                },
            }
        },
        "/api/v2/jobs/{job_id}/events": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "The job's changes as Server-Sent Events, to its end",
                "operationId": "jobEvents",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,6}$"},
                        "description": "resume after this event (1 queued, 2 processing, "
                        "3 preview, 4 the end)",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "`queued`, `processing`, `preview`, then `succeeded`, "
                        "`failed` or `canceled` (its data: the job as GET answers it), each "
                        "with its id; a `: keep-alive` comment every 15 s (docs/events.md)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error("a malformed Last-Event-ID (`invalid_last_event_id`)"),
                    "404": found,
                    **LIMITED,
                },
            },
        },
        "/api/v2/jobs/{job_id}": {
            "parameters": [JOB_ID],
            "get": {
                "summary": "The job",
                "operationId": "getJob",
                "responses": {
                    "200": _job("the job", *RATE_HEADERS),
                    "404": found,
                    **LIMITED,
                    **STORE_DOWN,
                },
            },
            "delete": {
                "summary": "Cancel the job",
                "operationId": "cancelJob",
                "responses": {
                    "200": _job(
                        "canceled (a running job's outputs are discarded; identical jobs "
                        "attached to it are handed over)"
                    ),
                    "404": found,
                    "409": _error("the job already finished (`job_finished`)"),
                    **LIMITED,
                    **STORE_DOWN,
                },
            },
        },
        "/api/v2/process-with-effects": {
            "post": {
                "summary": "Queue a job and wait for it (for clients of the replaced service)",
                "operationId": "processWithEffects",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": _submit_body(
                    timeout={"type": "number", "minimum": 0, "maximum": 120, "default": 30}
                ),
                "responses": {
                    "200": _job("the finished job"),
                    "202": _job("the wait ran out; poll the Location", "Location"),
                    **SUBMIT_ERRORS,
                    "409": _error(
                        "an Idempotency-Key conflict, or the job was canceled while this "
                        "request waited (`job_canceled`; `job` is the job)",
                        "Retry-After",
                    ),
                    "422": _error("the image cannot be read or decoded; `job` is the job"),
                    "500": _error("the job failed for a reason other than its image"),
                    "503": _error(
                        "as for a submit (`queue_full`, `queue_unavailable`, "
                        "`store_unavailable`), or storage stayed down past the worker's retry "
                        "window (`storage_unavailable`; `job` is the job)",
                        "Retry-After",
                    ),
                },
            }
        },
        "/api/v2/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/files/{key}": {
            "get": {
                "summary": "A finished output from local storage",
                "operationId": "getFile",
                "parameters": [
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": _error("no such file (`file_not_found`)"),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": _status("alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: Redis answers and a warmed gpu worker beats",
                "operationId": "readyz",
                "responses": {"200": _status("ready"), "503": _status("not ready")},
            }
        },
    }


def _status(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "checks": {"type": "object"}},
        "required": ["status"],
    }
    return {"description": description, "content": {JSON: {"schema": schema}}}


def document(auth_required: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "cutout",
            "version": "2",
            "description": "Background removal and photo effects, asynchronous. Every error "
            'is `{"error": {"code", "message"}}`.',
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "headers": _headers(),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
    if auth_required:
        protected = ("/api/v2/jobs", "/api/v2/jobs/{job_id}", "/api/v2/jobs/{job_id}/events")
        for path in (*protected, "/api/v2/process-with-effects"):
            for method, operation in doc["paths"][path].items():
                if method != "parameters":
                    operation["security"] = [{"apiKey": []}]
    return doc


@bp.get("/api/v2/openapi.json")
def openapi_json():  # type: ignore[no-untyped-def]
    return jsonify(document(current_app.config["AUTH_REQUIRED"]))
