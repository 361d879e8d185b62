"""The front door (``api/front.py``) in front of gunicorn, as the Procfile runs them: event
streams stay in the gevent process, everything else reaches gunicorn unchanged, request by
request on a kept-alive connection, with the client's own address. No gpu worker: jobs stay
queued, so their streams stay open."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from devtools.redis_server import free_port
from tests.conftest import _answers, _spawn, _stop, stack_env, wait_until
from tests.test_api import _jpeg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def front(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("front")
    env = stack_env(redis_url, base / "files", CUTOUT_RATE_LIMIT_READ="10000 per minute")
    upstream, port = free_port(), free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "2",
                "--bind", f"127.0.0.1:{upstream}", "--proxy-protocol", "v1",
                "--access-logfile", "-", "api:create_app()"]  # fmt: skip
    door = [sys.executable, "-m", "api.front", "--bind", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{upstream}"]  # fmt: skip
    processes = [_spawn(gunicorn, env, base / "api.log"), _spawn(door, env, base / "front.log")]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/healthz"), 30, "the front and gunicorn")
        yield url
    finally:
        for process in processes:
            _stop(process)
        print((base / "api.log").read_text(errors="replace")[-3000:])


def _noise_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def _next_event(lines: Iterator[str]) -> str:
    for line in lines:
        if line.startswith("event:"):
            return line.split(":", 1)[1].strip()
    return ""


def test_streams_do_not_hold_gunicorns_threads(front: str) -> None:
    """Ten open streams, each asked on a connection that first carried a normal request, with
    gunicorn holding two threads: uploads and reads are still answered at once."""
    sessions, streams = [], []
    for i in range(10):
        session = requests.Session()
        upload = session.post(
            f"{front}/api/v2/jobs", files={"image": ("a.jpg", _jpeg((64 + i, 48)))}, timeout=10
        )
        assert upload.status_code == 202, upload.text
        job_id = upload.json()["id"]
        assert session.get(f"{front}/api/v2/jobs/{job_id}", timeout=10).json()["id"] == job_id
        stream = session.get(f"{front}/api/v2/jobs/{job_id}/events", stream=True, timeout=10)
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert _next_event(stream.iter_lines(decode_unicode=True)) == "queued"
        sessions.append(session)
        streams.append(stream)

    big = _noise_jpeg()  # a ~0.5 MB body, relayed by its Content-Length
    upload = requests.post(f"{front}/api/v2/jobs", files={"image": ("b.jpg", big)}, timeout=5)
    assert upload.status_code == 202, upload.text
    job = upload.json()

    done = threading.Event()

    def cancel_later() -> None:
        requests.delete(f"{front}/api/v2/jobs/{job['id']}", timeout=5)
        done.set()

    with requests.get(f"{front}/api/v2/jobs/{job['id']}/events", stream=True, timeout=10) as s:
        lines = s.iter_lines(decode_unicode=True)
        assert _next_event(lines) == "queued"
        threading.Timer(0.2, cancel_later).start()
        assert _next_event(lines) == "canceled"
    assert done.wait(5)
    for stream in streams:
        stream.close()
    for session in sessions:
        session.close()


def test_other_answers_are_gunicorns_own(front: str) -> None:
    """Errors and odd requests pass through untouched."""
    assert requests.get(f"{front}/api/v2/jobs/nope", timeout=5).status_code == 404
    bad = requests.post(
        f"{front}/api/v2/jobs", data=b"x", headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "missing_image"
