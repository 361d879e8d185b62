"""The service with RabbitMQ as its broker (``CUTOUT_BROKER_URL=amqp://…``): quorum queues,
real acknowledgements, countdowns through Celery's native delayed delivery, depth read by a
passive declare. The end-to-end job test, the webhook retry test (its ``Retry-After: 1`` is a
countdown) and the worker-SIGKILL redelivery test are the Redis stack's own, run here on a
stack whose broker is a vhost of its own on the machine's RabbitMQ; the job store stays Redis.

RabbitMQ: 127.0.0.1:5672 as guest/guest, or ``CUTOUT_TEST_RABBITMQ`` (an ``amqp://`` URL
without a vhost); vhosts are made and deleted with ``rabbitmqctl``. Skipped where neither
answers, except in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Producer

from jobs.amqp_queues import AmqpQueues
from tests.conftest import Stack, run_stack
from tests.test_live_api_e2e import STACK_ENV as WEBHOOK_ENV

# The Redis stack's own tests, collected again here with this module's `stack` (the SIGKILL
# test replaces the stack's worker, so it comes last).
from tests.test_live_api_e2e import test_a_webhook_fails_twice_then_arrives_signed  # noqa: F401
from tests.test_service_e2e import test_three_photos_end_to_end  # noqa: F401
from tests.test_worker_e2e import test_a_worker_killed_mid_batch_loses_no_job  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

QUORUM = {"x-queue-type": "quorum"}
RABBITMQ = os.environ.get("CUTOUT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"RabbitMQ is needed in CI: {why}")
    pytest.skip(f"no RabbitMQ to test against: {why}")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def rabbitmq_url() -> Iterator[str]:
    """A vhost of this run's own, so parallel runs never share a queue; deleted after."""
    if shutil.which("rabbitmqctl") is None:
        _unavailable("rabbitmqctl is not on the PATH")
    vhost = f"cutout-test-{uuid.uuid4().hex[:10]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
    except (subprocess.SubprocessError, OSError) as exc:
        _unavailable(f"rabbitmqctl add_vhost failed: {exc}")
    try:
        user = Connection(RABBITMQ).userid or "guest"
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{RABBITMQ}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def stack(
    rabbitmq_url: str, redis_url: str, weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {**WEBHOOK_ENV, "CUTOUT_BROKER_URL": rabbitmq_url}
    with run_stack(redis_url, tmp_path_factory.mktemp("amqp-stack"), **env) as running:
        yield running


def test_the_queues_are_quorum_queues_and_admission_reads_their_depth(
    stack: Stack, rabbitmq_url: str
) -> None:
    """What the worker declared: durable quorum queues; a message published to `gpu` while
    nothing consumes it is one the API's depth reading (admission, metrics) counts."""
    with Connection(rabbitmq_url) as connection:
        channel = connection.default_channel
        for name in ("gpu", "io"):
            # Redeclaring with other arguments is refused (406): these are the queue's own.
            channel.queue_declare(name, durable=True, auto_delete=False, arguments=QUORUM)
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        channel.queue_declare(probe, durable=True, auto_delete=False, arguments=QUORUM)
        queues = AmqpQueues(rabbitmq_url)
        try:
            assert queues.depth(probe) == 0
            assert queues.depth("no-such-queue") == 0
            for _ in range(3):
                Producer(channel).publish(b"{}", exchange="", routing_key=probe)
            assert queues.depth(probe) == 3
        finally:
            queues.close()
            channel.queue_delete(probe)


def test_countdowns_are_whole_seconds_of_at_least_one_on_rabbitmq_only() -> None:
    """Native delayed delivery refuses a countdown under a second (the webhook test found the
    retry dropped); Redis takes any."""
    from types import SimpleNamespace

    from tasks.webhook import countdown

    def task(url: str) -> Any:
        return SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(broker_url=url)))

    amqp = task("amqp://guest:guest@127.0.0.1:5672/x")
    assert [countdown(amqp, s) for s in (0.0, 0.2, 1.0, 1.01, 37.5)] == [1, 1, 1, 2, 38]
    assert countdown(task("redis://127.0.0.1:6379/0"), 0.2) == 0.2


def test_depth_is_read_from_the_broker_the_settings_name(redis_client: Any) -> None:
    """RabbitMQ by passive declare; a Redis broker of its own on its own server (the capacity
    count found the admission reading the store's instead); unset, the store's own client."""
    from types import SimpleNamespace

    from jobs.queue import BrokerQueues, broker_queues

    def conf(url: str, own: bool) -> Any:
        return SimpleNamespace(
            broker_url=url, cutout_broker_of_its_own=own, broker_transport_options={}
        )

    assert isinstance(broker_queues(conf(f"{RABBITMQ}/x", True), redis_client), AmqpQueues)
    other = broker_queues(conf("redis://127.0.0.1:1/3", True), redis_client)
    assert isinstance(other, BrokerQueues) and other.redis is not redis_client
    assert other.redis.connection_pool.connection_kwargs["port"] == 1
    default = broker_queues(conf("redis://127.0.0.1:6379/0", False), redis_client)
    assert isinstance(default, BrokerQueues) and default.redis is redis_client
