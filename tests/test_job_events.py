"""``GET /api/v2/jobs/<id>/events`` over real Redis: the app with auth on, jobs queued but not
run; the worker's changes are made here through the same ``JobStore.update`` a worker uses.
The whole stack's stream is in tests/test_service_e2e.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.api_keys import hash_key
from jobs.record import now_iso
from jobs.store import JobStore
from storage.result_cache import StoredOutput
from storage.settings import StorageSettings
from tests.test_api import _error
from tests.test_api_access import ALICE, BOB, _auth, _submit


@pytest.fixture
def app(redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> Flask:
    return create_app(
        {
            "STORAGE": StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url),
            "ENQUEUE": lambda job_id: None,
            "NOTIFY": lambda job_id: None,
            "AUTH_REQUIRED": True,
            "API_KEYS": {hash_key(ALICE): "alice", hash_key(BOB): "bob"},
            "EVENTS_HEARTBEAT_SECONDS": 0.3,
        }
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Events:
    """An open stream read one frame at a time (a frame: an event or a comment)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = ""

    def frame(self) -> dict[str, Any] | None:
        """The next frame as {"id", "event", "data"} or {"comment"}; None when it ended."""
        while "\n\n" not in self.buffer:
            try:
                self.buffer += next(self.chunks).decode()
            except StopIteration:
                return None
        raw, self.buffer = self.buffer.split("\n\n", 1)
        frame: dict[str, Any] = {}
        for line in raw.split("\n"):
            name, _, value = line.partition(":")
            frame[name or "comment"] = value.strip()
        if "data" in frame:
            frame["data"] = json.loads(frame["data"])
        return frame

    def event(self) -> dict[str, Any] | None:
        while (frame := self.frame()) is not None:
            if "event" in frame:
                return frame
        return None


def _open(client: FlaskClient, job_id: str, key: str = ALICE, **headers: str) -> Events:
    response = client.get(
        f"/api/v2/jobs/{job_id}/events", headers={**_auth(key), **headers}, buffered=False
    )
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/event-stream"
    return Events(iter(response.response))


def _later(change: Callable[[], object], delay: float = 0.2) -> threading.Timer:
    timer = threading.Timer(delay, change)
    timer.start()
    return timer


OUT = StoredOutput("results/x/mask.png", "image/png", 64, 48, 10)


def test_a_stream_follows_a_job_from_queued_to_succeeded(client: FlaskClient, app: Flask) -> None:
    job = _submit(client).get_json()
    jobs: JobStore = app.extensions["cutout"].jobs
    events = _open(client, job["id"])
    queued = events.event()
    assert queued and queued["event"] == "queued" and queued["id"] == "1"
    assert queued["data"]["id"] == job["id"] and queued["data"]["queue_depth"] == 0

    started = now_iso()
    _later(
        lambda: jobs.update(
            job["id"], lambda r: replace(r, status="processing", started_at=started, batch_size=3)
        )
    )
    processing = events.event()
    assert processing and (processing["event"], processing["id"]) == ("processing", "2")
    assert processing["data"]["batch_size"] == 3

    _later(lambda: jobs.update(job["id"], lambda r: replace(r, preview={"color": OUT})))
    preview = events.event()
    assert preview and preview["event"] == "preview" and preview["data"]["preview"]["color"]

    finish = app.extensions["cutout"].dispatcher.finish
    _later(lambda: finish(job["id"], {"mask": OUT}))
    final = events.event()
    assert final and (final["event"], final["id"]) == ("succeeded", "4")
    assert final["data"] == client.get(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE)).get_json()
    assert events.frame() is None, "the stream ends after the final event"


def test_a_reconnect_after_the_end_gets_the_final_event_at_once(
    client: FlaskClient, app: Flask
) -> None:
    job = _submit(client).get_json()
    app.extensions["cutout"].dispatcher.finish(job["id"], {"mask": OUT})
    for last_seen in ("2", "4"):
        events = _open(client, job["id"], **{"Last-Event-ID": last_seen})
        final = events.event()
        assert final and final["event"] == "succeeded" and final["id"] == "4"
        assert events.frame() is None


def test_last_event_id_skips_what_the_client_saw(client: FlaskClient) -> None:
    job = _submit(client).get_json()
    client.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE))
    events = _open(client, job["id"], **{"Last-Event-ID": "1"})
    assert events.event()["event"] == "canceled"  # type: ignore[index]
    bad = client.get(
        f"/api/v2/jobs/{job['id']}/events", headers={**_auth(ALICE), "Last-Event-ID": "x"}
    )
    assert bad.status_code == 400 and _error(bad) == "invalid_last_event_id"


def test_another_keys_job_is_404_and_no_key_is_401(client: FlaskClient) -> None:
    job = _submit(client).get_json()
    other = client.get(f"/api/v2/jobs/{job['id']}/events", headers=_auth(BOB))
    assert other.status_code == 404 and _error(other) == "job_not_found"
    assert client.get("/api/v2/jobs/nope/events", headers=_auth(ALICE)).status_code == 404
    anonymous = client.get(f"/api/v2/jobs/{job['id']}/events")
    assert anonymous.status_code == 401 and _error(anonymous) == "unauthorized"


def test_a_canceled_job_ends_its_stream_with_canceled(client: FlaskClient) -> None:
    job = _submit(client).get_json()
    events = _open(client, job["id"])
    assert events.event()["event"] == "queued"  # type: ignore[index]
    _later(lambda: client.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE)))
    final = events.event()
    assert final and final["event"] == "canceled" and final["data"]["status"] == "canceled"
    assert events.frame() is None


def test_an_idle_stream_sends_heartbeat_comments(client: FlaskClient) -> None:
    job = _submit(client).get_json()
    events = _open(client, job["id"])
    assert events.event()["event"] == "queued"  # type: ignore[index]
    assert events.frame() == {"comment": "keep-alive"}
    assert events.frame() == {"comment": "keep-alive"}
