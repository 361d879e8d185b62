"""The demo page at ``/``: static HTML, CSS and JS shipped in the package, nothing to build.

The page talks to the same ``/api/v2/jobs`` endpoints as any client. Its content security
policy forbids scripts, styles and fonts from anywhere but this server, so the page works
offline and a stray CDN link would break the browser test rather than go unnoticed.
"""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("demo", __name__, static_folder="static", static_url_path="/demo")

# Output images may live on another origin (S3 or a CDN in front of it), hence img-src * and
# connect-src * (the browser effects fetch the cutout's bytes); 'wasm-unsafe-eval' lets the
# page compile the effects module (WebAssembly only, not eval).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src * data: blob:; connect-src 'self' * blob:; "
    "script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@bp.get("/")
def index() -> Response:
    response = bp.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
