"""The gpu worker as it runs for real (gunicorn, Redis, a Celery worker process): readiness
that drops a worker as it shuts down, batches in flight overlapping, a preview visible while
its job runs, and no job lost when the worker is killed with SIGKILL in the middle of a batch.
The last test replaces the stack's worker."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from bench.photos import phone_jpeg
from devtools.redis_server import free_port
from tests.conftest import Stack, _stop, start_worker, wait_for_gpu_worker, wait_until
from tests.test_service_e2e import fetch_image, poll, submit

pytestmark = pytest.mark.slow

# Redis hands a vanished worker's unacknowledged jobs to the next one after this long.
VISIBILITY_TIMEOUT = 5
STACK_ENV = {"CUTOUT_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}


def job(stack: Stack, location: str) -> dict[str, Any]:
    return requests.get(f"{stack.api_url}{location}", timeout=10).json()  # type: ignore[no-any-return]


def logged(stack: Stack, name: str = "gpu") -> list[dict[str, Any]]:
    text = (stack.logs / f"{name}.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def batch_of(stack: Stack, job_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next(
            (e for e in logged(stack) if e.get("stage") == "batch" and job_id in e["job_ids"]),
            None,
        )

    return wait_until(find, 10, f"the batch line of job {job_id}")  # type: ignore[no-any-return]


def processing(stack: Stack, locations: list[str]) -> None:
    wait_until(
        lambda: any(job(stack, loc)["status"] == "processing" for loc in locations),
        120,
        "a job to start",
        interval=0.05,
    )


def gpu_workers(stack: Stack) -> int:
    ready = requests.get(f"{stack.api_url}/readyz", timeout=10).json()
    return int(ready["checks"]["gpu_workers"])


def test_a_worker_that_shuts_down_leaves_readiness_at_once(stack: Stack) -> None:
    """Stopped (SIGTERM), a second worker is gone from the heartbeats as soon as its process
    ends, not once its last beat is stale (15 s)."""
    client = redis.Redis.from_url(stack.redis_url)
    key = "cutout:workers:gpu"  # jobs.heartbeats' sorted set of the gpu queue's workers

    def second_member() -> str | None:
        names = [m.decode() for m in client.zrange(key, 0, -1)]
        return next((n for n in names if n.startswith("gpu-second@")), None)

    env = {**stack.env, "CUTOUT_METRICS_PORT": str(free_port())}
    second = start_worker(env, stack.logs, "gpu-second")
    try:
        member = wait_until(second_member, 180, "the second worker's heartbeat")
        assert gpu_workers(stack) == 2
    finally:
        _stop(second)
    assert second.returncode is not None
    # Read before anything prunes stale entries: only the worker itself could have removed it.
    assert client.zscore(key, member) is None, "it withdrew its heartbeat as it shut down"
    assert gpu_workers(stack) == 1, "the stack's own worker is still counted"


def test_the_next_batch_decodes_while_this_one_is_on_the_device(
    stack: Stack, photos: dict[str, bytes]
) -> None:
    first = [
        submit(stack, photos[name], max_size="128").headers["Location"]
        for name in ("astronaut", "chelsea")
    ]
    processing(stack, first)
    later = submit(stack, photos["coffee"], max_size="128").headers["Location"]
    jobs = [poll(stack, loc) for loc in (*first, later)]
    assert all(j["status"] == "succeeded" for j in jobs), jobs

    this, following = batch_of(stack, jobs[0]["id"]), batch_of(stack, jobs[2]["id"])
    assert this["batch_id"] != following["batch_id"]
    # The trace the worker logged: batch k+1 began decoding before batch k left the model.
    assert following["spans"]["decode"][0] < this["spans"]["inference"][1], (this, following)
    # One batch on the device at a time.
    assert following["spans"]["inference"][0] >= this["spans"]["effects"][1]
    assert this["model_calls"][0]["input"] == jobs[0]["model_input"] == 1024


def test_a_preview_is_visible_while_its_job_runs(stack: Stack) -> None:
    photo = phone_jpeg("astronaut", size=(2400, 1800))
    location = submit(stack, photo, preview="true").headers["Location"]

    def previewed() -> dict[str, Any] | None:
        current = job(stack, location)
        return current if current["preview"] or current["status"] == "succeeded" else None

    seen = wait_until(previewed, 180, "the preview", interval=0.03)
    assert seen["status"] == "processing" and seen["outputs"] == {}, "the preview came first"
    assert set(seen["preview"]) == {"color", "enhancedblackwhite", "popart", "dithering"}
    for preview in seen["preview"].values():
        img = fetch_image(preview["url"])
        assert img.format == "WEBP" and img.size == (256, 192) == (preview["width"], 192)
    done = poll(stack, location)
    assert done["status"] == "succeeded" and done["preview"] == seen["preview"]
    assert done["options"]["preview"] is True and done["timings"]["preview_ms"] > 0
    color = Image.open(
        io.BytesIO(requests.get(done["outputs"]["color"]["url"], timeout=10).content)
    )
    assert color.size == (2048, 1536)


def test_a_worker_killed_mid_batch_loses_no_job(stack: Stack, photos: dict[str, bytes]) -> None:
    locations = [
        submit(stack, photos[name], effects="color", max_size="64").headers["Location"]
        for name in ("astronaut", "chelsea", "coffee")
    ]
    processing(stack, locations)
    started = time.monotonic()
    os.killpg(stack.worker.pid, signal.SIGKILL)
    stack.worker.wait(10)
    before = [job(stack, loc) for loc in locations]
    assert all(j["status"] in ("queued", "processing") for j in before), before

    # Redis redelivers once the visibility timeout has passed since the jobs were handed out;
    # RabbitMQ as soon as the dead worker's connection closes (tests/test_rabbitmq_broker.py).
    if not stack.env.get("CUTOUT_BROKER_URL"):
        time.sleep(max(0.0, VISIBILITY_TIMEOUT + 1 - (time.monotonic() - started)))
    replacement = start_worker(stack.env, stack.logs, name="gpu2")
    try:
        wait_for_gpu_worker(stack.redis_url)
        after = [poll(stack, loc) for loc in locations]
    finally:
        _stop(replacement)
    assert [j["status"] for j in after] == ["succeeded"] * 3, after
    ran_again = {e["job_id"] for e in logged(stack, "gpu2") if e.get("stage") == "processed"}
    assert {j["id"] for j in before if j["status"] == "processing"} <= ran_again
    for finished in after:
        assert fetch_image(finished["outputs"]["color"]["url"]).size[0] <= 64
