"""``cutout.client`` on its own, against a stand-in server: the key goes to the API only, and
``wait`` polls where the event stream fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cutout.client import Client

JOB = {"id": "j1", "status": "succeeded", "outputs": {}, "timings": {}}


@pytest.fixture
def old_server() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A server without the event stream (a proxy that refuses it, an older API): 502 on
    ``/events``, the job on ``GET``, a file elsewhere; records each path and its key."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.endswith("/events"):
                self.send_response(502)
                self.end_headers()
                return
            body = json.dumps(JOB).encode() if self.path.startswith("/api/") else b"png"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_wait_polls_where_the_stream_fails_and_the_key_stays_home(
    old_server: tuple[str, list[tuple[str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = old_server
    monkeypatch.setenv("CUTOUT_API_KEY", "ck_from_env")
    with Client(url) as client:
        assert client.wait("j1", timeout=5) == JOB
        assert client.download(f"{url}/files/x.png") == b"png"
        elsewhere = url.replace("127.0.0.1", "localhost")  # another origin, same server
        assert client.download(f"{elsewhere}/files/x.png") == b"png"
    assert seen == [
        ("/api/v2/jobs/j1/events", "Bearer ck_from_env"),
        ("/api/v2/jobs/j1", "Bearer ck_from_env"),
        ("/files/x.png", "Bearer ck_from_env"),
        ("/files/x.png", None),
    ]
