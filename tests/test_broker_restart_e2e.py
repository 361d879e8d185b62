"""Redis (the broker and job store, with AOF) restarted while a real gpu worker holds a batch
and prefetched jobs and a real io worker holds a webhook retry: every job succeeds, the
webhook arrives, no worker exits (issue 16; tasks/broker_transport.py, docs/resilience.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.redis_server import free_port
from tests.conftest import Stack, WebhookReceiver, _stop, run_stack, start_worker, wait_until
from tests.own_redis import OwnRedis, running_redis
from tests.test_service_e2e import poll, submit
from tests.test_webhook_delivery import make_secret

pytestmark = pytest.mark.slow

RETRY_AFTER = 12  # seconds the receiver asks for: the io worker holds the retry that long


@pytest.fixture
def restartable(tmp_path: Path, weights: Path) -> Iterator[tuple[OwnRedis, Stack]]:
    env = {
        "CUTOUT_VISIBILITY_TIMEOUT": "60",  # as the deployment; nothing waits on it
        "CUTOUT_FLUSH_EVERY": "2",  # six jobs: a batch on the model, the rest prefetched
        "CUTOUT_WEBHOOK_SECRETS": make_secret(),
        "CUTOUT_WEBHOOK_ALLOWLIST": "127.0.0.0/8",
        "CUTOUT_WEBHOOK_RETRY_BASE": "1",
        "CUTOUT_WEBHOOK_TIMEOUT": "3",
    }
    with (
        running_redis(tmp_path / "redis") as server,
        run_stack(server.url, tmp_path, **env) as stack,
    ):
        yield server, stack


def _job(stack: Stack, location: str) -> dict[str, Any]:
    return requests.get(f"{stack.api_url}{location}", timeout=10).json()  # type: ignore[no-any-return]


def test_workers_ride_out_a_broker_restart(
    restartable: tuple[OwnRedis, Stack],
    photos: dict[str, bytes],
    webhook_receiver: WebhookReceiver,
) -> None:
    server, stack = restartable
    io_env = {**stack.env, "CUTOUT_METRICS_PORT": str(free_port())}
    io_worker = start_worker(io_env, stack.logs, "io", queue="io")
    try:
        wait_until(lambda: b"ready." in (stack.logs / "io.log").read_bytes(), 60, "the io worker")
        url = webhook_receiver.answer("/hook", (503, {"Retry-After": str(RETRY_AFTER)}))
        hooked = submit(stack, photos["coffee"], effects="color", max_size="48", webhook_url=url)
        wait_until(lambda: webhook_receiver.received("/hook"), 60, "the first webhook attempt")

        locations = [
            submit(stack, photos[name], effects="color", max_size=size).headers["Location"]
            for name in ("astronaut", "chelsea", "coffee")
            for size in ("64", "65")
        ]
        wait_until(
            lambda: any(_job(stack, loc)["status"] == "processing" for loc in locations),
            60,
            "a batch to start",
            interval=0.05,
        )
        server.stop()
        time.sleep(2)  # down long enough that the workers close their channels without it
        server.start()

        finished = [poll(stack, loc, timeout=120) for loc in locations]
        assert [j["status"] for j in finished] == ["succeeded"] * len(locations), finished
        hook_location = hooked.headers["Location"]
        settled = wait_until(
            lambda: _job(stack, hook_location)["webhook"]["state"] == "delivered",
            RETRY_AFTER + 30,
            "the webhook's retry",
        )
        assert settled
        got = webhook_receiver.received("/hook")
        assert len(got) == 2 and len({r.headers["webhook-id"] for r in got}) == 1

        for name, proc in (("gpu", stack.worker), ("io", io_worker)):
            log = (stack.logs / f"{name}.log").read_text(errors="replace")
            assert proc.poll() is None, f"the {name} worker exited:\n{log[-3000:]}"
            assert "Unrecoverable error" not in log
            # It did hold messages as the broker went away, and handed them back: after the
            # reconnect (tasks/broker_transport.py), or at once if it noticed the loss only
            # once Redis was back (kombu's own restore).
            handed_back = "held when the broker went away" in log
            assert handed_back or "unacknowledged message(s)" in log, log[-3000:]
    finally:
        _stop(io_worker)
