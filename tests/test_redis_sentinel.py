"""The job store, the result cache and the limiter through Redis Sentinel
(``CUTOUT_REDIS_URL=redis+sentinel://…``): the URL's forms, then the whole service while its
primary is killed mid-run: no job lost, no 5xx outside the seconds of the failover.

The broker here is another, plain Redis (in production RabbitMQ, tests/test_rabbitmq_broker.py),
so what is tested is the store's failover alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from devtools.redis_sentinel import SentinelGroup, start_group
from storage.redis_client import celery_redis, open_redis, parse_sentinel_url
from tests.conftest import Stack, photo_jpeg, run_stack
from tests.test_service_e2e import poll


def test_a_sentinel_url_names_its_sentinels_service_and_password() -> None:
    target = parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/cutout")
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (target.service, target.password) == ("cutout", "s3cret")
    url, options = celery_redis("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/cutout")
    assert url == "sentinel://:s3cret@10.0.0.1:26379/0;sentinel://:s3cret@10.0.0.2:26380/0"
    assert options == {"master_name": "cutout", "sentinel_kwargs": {"password": "s3cret"}}
    assert celery_redis("redis://127.0.0.1:6379/0") == ("redis://127.0.0.1:6379/0", {})


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://10.0.0.1:26379", "redis+sentinel://10.0.0.1/cutout", "redis+sentinel:///x"],
)
def test_a_sentinel_url_without_hosts_ports_or_service_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="CUTOUT_REDIS_URL"):
        parse_sentinel_url(url)


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    group = start_group(tmp_path_factory.mktemp("sentinel"))
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def stack(
    sentinels: SentinelGroup,
    redis_url: str,
    weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()  # the broker
    env = {"CUTOUT_BROKER_URL": redis_url, "CUTOUT_FLUSH_INTERVAL": "0.2"}
    with run_stack(sentinels.url, tmp_path_factory.mktemp("sentinel-stack"), **env) as running:
        yield running


@pytest.mark.slow
def test_killing_the_primary_mid_run_loses_no_job(
    stack: Stack, sentinels: SentinelGroup, photos: dict[str, bytes]
) -> None:
    """Submits (new photos and cache hits) and reads go on while the primary is SIGKILLed:
    every accepted job ends succeeded, and any 5xx falls within the failover."""
    answers: list[tuple[float, int, str]] = []  # (time, status, what)
    accepted: list[str] = []
    stop = threading.Event()
    done = photos["chelsea"]

    def traffic() -> None:
        rounds = 0
        while not stop.is_set():
            rounds += 1  # a new photo every fifth round (a job to run on a CPU), else a hit
            sends = [("hit", done)]
            if rounds % 5 == 1:
                sends.append(("new", photo_jpeg("coffee", 60 + rounds)))
            for what, data in sends:
                r = requests.post(
                    f"{stack.api_url}/api/v2/jobs",
                    files={"image": ("p.jpg", data)},
                    data={"effects": "color", "max_size": "64"},
                    timeout=30,
                )
                answers.append((time.monotonic(), r.status_code, what))
                if r.status_code == 202:
                    accepted.append(r.headers["Location"])
            for location in accepted[-3:]:
                r = requests.get(f"{stack.api_url}{location}", timeout=30)
                answers.append((time.monotonic(), r.status_code, "read"))
            time.sleep(0.3)

    first = requests.post(
        f"{stack.api_url}/api/v2/jobs",
        files={"image": ("p.jpg", done)},
        data={"effects": "color", "max_size": "64"},
        timeout=30,
    )
    assert poll(stack, first.headers["Location"])["status"] == "succeeded"

    client = threading.Thread(target=traffic, daemon=True)
    client.start()
    time.sleep(3)
    old = sentinels.primary_port_now()
    killed_at = time.monotonic()
    sentinels.kill(old)
    failover_seconds = sentinels.wait_for_failover(old)
    time.sleep(4)  # traffic goes on against the new primary
    stop.set()
    client.join(60)

    late = [a for a in answers if a[1] >= 500 and a[0] > killed_at + failover_seconds + 2]
    assert not late, f"5xx after the failover ({failover_seconds:.1f}s): {late}"
    early = [a for a in answers if a[1] >= 500 and a[0] < killed_at]
    assert not early, early
    assert any(a[0] > killed_at + failover_seconds and a[1] == 202 for a in answers)
    assert open_redis(sentinels.url).ping()
    ended = [poll(stack, location, timeout=240) for location in accepted]
    assert [j["status"] for j in ended] == ["succeeded"] * len(ended), ended
    print(  # the figures docs/scaling.md quotes
        f"failover {failover_seconds:.1f}s, {len(answers)} answers, "
        f"{sum(a[1] >= 500 for a in answers)} 5xx, {len(accepted)} jobs all succeeded"
    )
