"""The API against a real Redis of the test's own (with AOF), which the tests stop and restart:
503 ``store_unavailable`` in bounded time while it is down, readiness that only counts
heartbeats of the running server, and an atomic queue-depth admission under concurrency
(issue 16; docs/resilience.md)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from PIL import Image

from api import create_app
from jobs.heartbeats import Heartbeats
from storage.settings import StorageSettings
from tests.own_redis import OwnRedis, running_redis
from tests.test_openapi import DOC, conforms


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def make_app(own_redis: OwnRedis, tmp_path: Path) -> Callable[..., Flask]:
    def make(**config: Any) -> Flask:
        storage = StorageSettings(
            local_dir=tmp_path / "files", redis_url=own_redis.url, redis_timeout_seconds=1.0
        )
        return create_app(
            {
                "STORAGE": storage,
                "ENQUEUE": lambda job_id: None,
                "NOTIFY": lambda job_id: None,
                **config,
            }
        )

    return make


def _jpeg(width: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def _form(width: int = 64) -> dict[str, Any]:
    return {"image": (io.BytesIO(_jpeg(width)), "photo.jpg"), "effects": "color"}


@pytest.mark.parametrize("fail", ["closed", "open"])
def test_every_job_endpoint_answers_503_store_unavailable_while_redis_is_down(
    make_app: Callable[..., Flask], own_redis: OwnRedis, fail: str
) -> None:
    client = make_app(RATE_LIMIT_FAIL=fail).test_client()
    job = client.post("/api/v2/jobs", data=_form(), content_type="multipart/form-data")
    assert job.status_code == 202
    location = job.headers["Location"]
    own_redis.stop()

    calls = {  # the operation in the OpenAPI document: the call
        ("/api/v2/jobs", "post"): lambda: client.post(
            "/api/v2/jobs", data=_form(65), content_type="multipart/form-data"
        ),
        ("/api/v2/jobs/{job_id}", "get"): lambda: client.get(location),
        ("/api/v2/jobs/{job_id}", "delete"): lambda: client.delete(location),
        ("/api/v2/process-with-effects", "post"): lambda: client.post(
            "/api/v2/process-with-effects", data=_form(66), content_type="multipart/form-data"
        ),
    }
    for name, call in calls.items():
        began = time.monotonic()
        response = call()
        took = time.monotonic() - began
        assert response.status_code == 503, (name, response.status_code, response.get_json())
        assert response.get_json()["error"]["code"] == "store_unavailable", name
        assert int(response.headers["Retry-After"]) > 0, name
        assert took < 3.0, f"{name} took {took:.1f}s"
        conforms(*name, response)
        assert (
            "store_unavailable" in DOC["paths"][name[0]][name[1]]["responses"]["503"]["description"]
        )
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200

    own_redis.start()  # and back: the same app answers again, the job kept (AOF)
    assert client.get(location).status_code == 200


def test_the_rate_limit_fail_mode_is_checked_at_start(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="CUTOUT_RATE_LIMIT_FAIL"):
        make_app(RATE_LIMIT_FAIL="sometimes")


def test_readiness_never_counts_a_heartbeat_restored_by_a_restart(
    make_app: Callable[..., Flask], own_redis: OwnRedis
) -> None:
    client = make_app().test_client()
    beats = Heartbeats(redis.Redis.from_url(own_redis.url))
    beats.beat("gpu", "gpu@gone")  # a worker that beat, then died without a word
    assert client.get("/readyz").status_code == 200
    own_redis.restart()  # its beat comes back from the AOF, seconds old
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.get_json()
    assert ready.get_json()["checks"]["gpu_workers"] == 0
    beats.beat("gpu", "gpu@alive")  # a live worker's next beat counts again
    assert client.get("/readyz").get_json()["checks"]["gpu_workers"] == 1
    beats.leave("gpu", "gpu@alive")
    assert client.get("/readyz").status_code == 503


def test_a_stale_heartbeat_never_counts(own_redis: OwnRedis) -> None:
    beats = Heartbeats(redis.Redis.from_url(own_redis.url), stale_after=0.5)
    beats.beat("gpu", "gpu@quiet")
    assert beats.alive("gpu") == ["gpu@quiet"]
    time.sleep(0.7)
    assert beats.alive("gpu") == []


def test_concurrent_submits_never_overshoot_the_queue_depth(
    make_app: Callable[..., Flask], own_redis: OwnRedis
) -> None:
    """40 submits at once with room for 20: exactly 20 are queued, on the broker's real list
    (the message a producer pushes is stood in for by the job id), the rest get queue_full."""
    client_redis = redis.Redis.from_url(own_redis.url)

    def push_to_broker(job_id: str) -> None:
        time.sleep(0.01)  # widen the window between admission and queueing
        client_redis.lpush("gpu", job_id)

    app = make_app(ENQUEUE=push_to_broker, MAX_QUEUE_DEPTH=20, RATE_LIMIT_SUBMIT="1000/minute")

    def submit(i: int) -> int:
        with app.test_client() as client:  # one client per thread, as separate requests
            form = _form(64 + i)  # distinct photos: no cache hits, no followers
            response = client.post("/api/v2/jobs", data=form, content_type="multipart/form-data")
            return int(response.status_code)

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(submit, range(40)))
    assert sorted(set(statuses)) == [202, 503], statuses
    assert statuses.count(202) == 20 and client_redis.llen("gpu") == 20
    assert client_redis.zcard("cutout:admission:gpu") == 0, "every admission was withdrawn"
