"""The whole service on S3 storage (nanio, real SigV4), and the result cache seen from outside:
gunicorn + real Celery workers + beat + Redis, over HTTP.

"Never reaches the worker" is measured by the worker itself: it counts the messages it
receives, read here through Celery's remote control (``inspect cutout_received``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from celery import Celery

from storage.base import IMMUTABLE_CACHE_CONTROL
from tests.conftest import S3Server, Stack, run_stack, wait_until
from tests.prom import scrape, value
from tests.test_service_e2e import check_outputs, fetch_image, poll, submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(scope="module")
def s3_stack(
    redis_url: str,
    weights: Path,
    s3_server: S3Server,
    bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    env = {**s3_server.env(bucket), "CUTOUT_STAGING_GRACE": "1", "CUTOUT_CLEANUP_INTERVAL": "1"}
    with run_stack(redis_url, tmp_path_factory.mktemp("s3-stack"), housekeeping=True, **env) as s:
        yield s


# The options of every astronaut job here, so that later ones find the earlier outputs.
ASTRONAUT = {"max_size": "256", "format": "png"}


def processed(stack: Stack) -> int:
    """Job messages the gpu worker has received since it started, as it counts them."""
    app = Celery(broker=stack.redis_url)
    worker = f"gpu@{socket.gethostname()}"
    try:
        replies = app.control.broadcast(
            "cutout_received", destination=[worker], reply=True, timeout=10, limit=1
        )
    finally:
        app.close()
    assert replies, "the gpu worker did not answer"
    return int(replies[0][worker].get("cutout.segment", 0))


def keys(job: dict[str, Any]) -> dict[str, str]:
    """Each output's object key (presigned URLs differ per request; keys do not)."""
    return {name: urlsplit(out["url"]).path for name, out in job["outputs"].items()}


def staged_objects(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="staging/")
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_job_on_s3_end_to_end(
    s3_stack: Stack, s3_server: S3Server, bucket: str, photos: dict[str, bytes]
) -> None:
    before = processed(s3_stack)
    response = submit(s3_stack, photos["astronaut"], **ASTRONAUT, effects="color,popart")
    assert response.status_code == 202 and response.json()["cache"] == "miss"
    job = poll(s3_stack, response.headers["Location"])
    assert job["status"] == "succeeded", job
    assert list(job["outputs"]) == ["color", "popart", "mask"]
    assert job["computed"] == ["color", "popart", "mask"]
    for name, out in job["outputs"].items():
        assert out["url"].startswith(f"{s3_server.endpoint_url}/{bucket}/results/")
        assert "X-Amz-Signature=" in out["url"]
        fetched = requests.get(out["url"], timeout=10)
        assert fetched.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL
        assert fetched.headers["Content-Type"] == out["content_type"], name
    mask = np.asarray(fetch_image(job["outputs"]["mask"]["url"]))
    color = np.asarray(fetch_image(job["outputs"]["color"]["url"]))
    assert color.shape[:2] == mask.shape == (256, 256)
    assert 0.05 < (mask > 127).mean() < 0.95
    assert staged_objects(s3_server, bucket) == [], "the staged input is deleted after the job"
    assert processed(s3_stack) == before + 1


def test_a_repeated_upload_is_a_hit_that_never_reaches_the_worker(
    s3_stack: Stack, photos: dict[str, bytes]
) -> None:
    before = processed(s3_stack)
    first = submit(s3_stack, photos["astronaut"], **ASTRONAUT, effects="color,popart")
    first_job = poll(s3_stack, first.headers["Location"])
    counts = scrape(f"{s3_stack.api_url}/metrics")
    for effects in ("color,popart", "popart"):
        response = submit(s3_stack, photos["astronaut"], **ASTRONAUT, effects=effects)
        assert response.status_code == 200, response.text
        job = response.json()
        assert job["status"] == "succeeded" and job["cache"] == "hit"
        assert keys(job) == {n: keys(first_job)[n] for n in [*effects.split(","), "mask"]}
        assert requests.get(job["outputs"]["popart"]["url"], timeout=10).status_code == 200
    assert processed(s3_stack) == before, "no message reached the worker"
    after = scrape(f"{s3_stack.api_url}/metrics")
    for name, labels, moved in [
        ("cutout_cache_hits_total", {}, 2),
        ("cutout_cache_misses_total", {}, 0),
        ("cutout_jobs_total", {"status": "succeeded"}, 2),  # the API ended them: its hook counted
        ("cutout_jobs_total", {"status": "queued"}, 0),
    ]:
        assert (value(after, name, **labels) or 0) - (value(counts, name, **labels) or 0) == moved


def test_a_new_effect_computes_only_that_one(s3_stack: Stack, photos: dict[str, bytes]) -> None:
    before = processed(s3_stack)
    earlier = submit(s3_stack, photos["astronaut"], **ASTRONAUT, effects="color").json()
    response = submit(s3_stack, photos["astronaut"], **ASTRONAUT)
    assert response.status_code == 202 and response.json()["cache"] == "partial"
    job = poll(s3_stack, response.headers["Location"])
    assert job["status"] == "succeeded", job
    assert job["computed"] == ["enhancedblackwhite", "dithering"], "not color, popart or mask"
    assert {k: keys(job)[k] for k in ("color", "mask")} == keys(earlier)
    check_outputs(job, photos["astronaut"], "png")
    assert processed(s3_stack) == before + 1


def test_identical_concurrent_uploads_compute_once(
    s3_stack: Stack, photos: dict[str, bytes]
) -> None:
    metrics = f"{s3_stack.api_url}/metrics"  # summed over the gunicorn workers
    counts = scrape(metrics)
    before = processed(s3_stack)
    with ThreadPoolExecutor(3) as pool:
        responses = list(
            pool.map(lambda _: submit(s3_stack, photos["chelsea"], max_size="200"), range(3))
        )
    assert sorted(r.json()["cache"] for r in responses) == ["joined", "joined", "miss"]
    jobs = [poll(s3_stack, r.headers["Location"]) for r in responses]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert keys(jobs[0]) == keys(jobs[1]) == keys(jobs[2])
    assert processed(s3_stack) == before + 1, "three uploads, one computation"
    after = scrape(metrics)
    for name, moved in [("cutout_cache_misses_total", 1), ("cutout_cache_inflight_joins_total", 2)]:
        assert (value(after, name) or 0) - (value(counts, name) or 0) == moved, name


def test_beat_and_the_io_worker_sweep_stale_staging(
    s3_stack: Stack, s3_server: S3Server, bucket: str
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="staging/no-such-job", Body=b"left over")
    time.sleep(1.1)  # older than CUTOUT_STAGING_GRACE; beat sends the cleanup every second
    wait_until(lambda: staged_objects(s3_server, bucket) == [], 60, "the periodic cleanup")
