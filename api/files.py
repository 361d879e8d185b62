"""Serves finished outputs from local storage at ``/files/<key>`` (a CDN fronts S3 instead)."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response

from api.errors import ApiError
from api.services import services
from storage.base import InvalidKey
from storage.local import LocalStore

bp = Blueprint("files", __name__)


@bp.get("/files/<path:key>")
def get_file(key: str) -> Response:
    store = services().store
    # Only finished results are public; staged uploads never are.
    if not isinstance(store, LocalStore) or not key.startswith("results/"):
        raise ApiError(404, "file_not_found", "no such file")
    try:
        data = store.open(key)
    except (FileNotFoundError, InvalidKey):
        raise ApiError(404, "file_not_found", "no such file") from None
    mimetype = mimetypes.guess_type(key)[0] or "application/octet-stream"
    response = Response(data, mimetype=mimetype)
    # Keys are content addressed: the bytes under a key never change.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
