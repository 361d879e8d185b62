"""bench/load.py's parts on their own: the open-loop driver against a local HTTP server, the
summary (refusals apart from errors), the RSS slope, the mix, the 127.0.0.1-only rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load import (
    Answer,
    Client,
    MemorySampler,
    Report,
    Targets,
    drive,
    parse_mix,
    slope_per_minute,
)


@pytest.fixture
def server() -> Iterator[str]:
    """Answers polls 200 and downloads 503 queue_full (as the API words a refusal)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            refused = self.path.startswith("/files/")
            body = json.dumps(
                {"error": {"code": "queue_full", "message": "x"}} if refused else {"id": "j"}
            ).encode()
            self.send_response(503 if refused else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_driver_keeps_its_rate_and_counts_answers_by_code(server: str) -> None:
    targets = Targets([], [f"{server}/api/v2/jobs/j"], [f"{server}/files/x.png"])
    client = Client(server, targets)
    began = time.monotonic()
    answers = drive(client, rate=40, duration=1.0, mix={"poll": 0.5, "download": 0.5})
    wall = time.monotonic() - began
    assert len(answers) == 40
    assert wall < 3, "open loop: the schedule does not wait for answers"
    summary = Report(40, 1.0, answers, wall=wall).summary()
    assert summary["answers"]["200 ok"] == summary["by_kind"]["poll"]["sent"]
    assert summary["answers"]["503 queue_full"] == summary["by_kind"]["download"]["sent"]
    assert summary["errors"] == 0, "a 503 queue_full is a refusal, not an error"
    assert summary["p50_ms"] > 0


def test_connection_errors_count_as_errors() -> None:
    answers = [Answer("poll", 0.0, 0.1, 0, "ConnectionError"), Answer("poll", 0.0, 0.1, 500, "x")]
    assert Report(1, 1, answers, wall=1).summary()["errors"] == 2


def test_the_rss_slope_is_in_mb_per_minute_and_skips_the_warmup() -> None:
    assert slope_per_minute([(0, 100), (30, 101), (60, 102)]) == pytest.approx(2.0)
    assert slope_per_minute([(0, 100), (60, 100)]) == 0
    # A jump while warming up, flat afterwards: no leak once the warm-up is left out.
    points = [(0.0, 50.0)] + [(float(t), 200.0) for t in range(10, 100, 10)]
    report = Report(1, 100, [], memory={"api": points}, warmup=0.1, wall=100)
    memory = report.summary()["memory"]["api"]
    assert memory["slope_mb_per_min"] == 0 and memory["slope_last_half_mb_per_min"] == 0
    assert memory["series"][0] == (0.0, 50.0)


def test_the_sampler_reads_this_process_and_its_children() -> None:
    import os

    sampler = MemorySampler({"me": os.getpid()}, every=60)
    sampler.sample()
    assert sampler.samples["me"][0][1] > 10  # MB


def test_the_mix_and_the_address_are_checked() -> None:
    assert parse_mix("poll=1,download=3") == {"poll": 1.0, "download": 3.0}
    with pytest.raises(ValueError, match="unknown kind"):
        parse_mix("flood=1")
    with pytest.raises(ValueError, match="127.0.0.1"):
        Client("http://example.com:8000", Targets([], [], []))
