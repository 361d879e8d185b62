"""``tasks/broker_transport.py`` without Celery: a kombu consumer holding a message while its
Redis stops, closed as Celery's consumer closes it (``collect()``, then ``close()``), hands the
message back as soon as the process connects again, where kombu's own transport leaves it in
the unacked index until the visibility timeout. The worker-level test (no worker exits) is
``tests/test_broker_restart_e2e.py``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Message, Queue

from tasks.broker_transport import TRANSPORT
from tests.own_redis import OwnRedis, running_redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def _hold_a_message_through_a_restart(server: OwnRedis, transport: str | None) -> redis.Redis:
    queue = Queue("held", Exchange("held", type="direct"), "held")
    connection = Connection(server.url, transport=transport)
    with connection.Producer() as producer:
        producer.publish({"job": 1}, exchange=queue.exchange, routing_key="held", declare=[queue])
    held: list[Message] = []
    consumer = connection.Consumer(queue, callbacks=[lambda _, m: held.append(m)], accept=["json"])
    consumer.qos(prefetch_count=2)
    consumer.consume()
    connection.drain_events(timeout=5)
    with pytest.raises(socket.timeout):  # a BRPOP for the next message is in flight
        connection.drain_events(timeout=0.2)
    assert len(held) == 1

    server.stop()
    connection.collect(socket_timeout=1)  # as celery's consumer does when the connection drops
    connection.close()
    server.start()
    with Connection(server.url, transport=transport) as again:
        again.connect()  # the reconnect: its first channel opens
        again.default_channel.close()
    return redis.Redis.from_url(server.url)


def test_a_held_message_is_handed_back_at_reconnect(own_redis: OwnRedis) -> None:
    client = _hold_a_message_through_a_restart(own_redis, TRANSPORT)
    assert client.llen("held") == 1 and client.hlen("unacked") == 0


def test_kombu_alone_leaves_it_for_the_visibility_timeout(own_redis: OwnRedis) -> None:
    """What the transport is for; when kombu hands it back itself, revisit the module."""
    client = _hold_a_message_through_a_restart(own_redis, None)
    assert client.llen("held") == 0 and client.hlen("unacked") == 1
