"""JSON instead of gunicorn's HTML for the requests gunicorn refuses before the app sees them.

gunicorn answers a request it cannot parse or that breaks its limits (a request line over
``limit_request_line``: 414; too many or too large header fields: 431; a malformed line,
header or chunk: 400; …) itself, from its worker's ``handle_error``, through
``gunicorn.util.write_error``, which writes an HTML page. It has no setting for that page, so
``gunicorn.conf.py`` swaps that one function in each worker (``post_worker_init``) for
``write_json_error``: the same status and reason, and the body every other failure of the
API has, ``{"error": {"code", "message"}}``. docs/operations.md lists the limits.
"""

from __future__ import annotations

import json
import socket

from api.errors import error_body

# gunicorn's statuses for what it refuses, as the API's machine-readable codes.
GUNICORN_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def json_error_response(status: int, reason: str, message: str) -> bytes:
    code = GUNICORN_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    body = json.dumps(error_body(code, message or reason)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature, writing JSON."""
    from gunicorn import util

    util.write_nonblock(sock, json_error_response(status_int, reason, mesg))


def install() -> None:
    """Make this gunicorn worker process answer its own refusals in JSON."""
    from gunicorn import util

    util.write_error = write_json_error
