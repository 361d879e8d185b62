"""The browser's effects module (``wasm/``, built by ``make`` into ``api/static/wasm/``).

Its files carry a hash of their content in their names, so they are served as immutable: a
returning visitor never downloads them twice. ``manifest.json`` names the current ones and is
revalidated on every use. Public, like the demo page. See docs/browser-effects.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from api.errors import ApiError

bp = Blueprint("effects_module", __name__)

BUILT = Path(__file__).resolve().parent / "static" / "wasm"
MANIFEST = "manifest.json"
_HASHED = re.compile(r"cutout-effects\.[0-9a-f]{16}\.(?:js|wasm)")
IMMUTABLE = "public, max-age=31536000, immutable"


def _not_built() -> ApiError:
    return ApiError(
        404,
        "effects_module_not_built",
        "the browser effects module is not built on this server (run `make`)",
    )


@bp.get(f"/static/wasm/{MANIFEST}")
def manifest() -> Response:
    if not (BUILT / MANIFEST).is_file():
        raise _not_built()
    response = send_from_directory(BUILT, MANIFEST, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/static/wasm/<name>")
def hashed_file(name: str) -> Response:
    if not _HASHED.fullmatch(name) or not (BUILT / name).is_file():
        raise ApiError(404, "not_found", f"no file {name!r} in the effects module")
    response = send_from_directory(BUILT, name, max_age=31536000, conditional=True)
    response.headers["Cache-Control"] = IMMUTABLE
    return response
