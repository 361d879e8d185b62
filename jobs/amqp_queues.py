"""How many messages wait in a queue on RabbitMQ (``CUTOUT_BROKER_URL=amqp://…``).

A passive ``queue.declare`` answers a queue's ready messages: those no consumer holds, so a
worker's prefetch is not counted, as on Redis. RabbitMQ cannot show a queue's oldest message
without delivering it (and a quorum queue counts every delivery against its delivery limit), so
no task id is read here: ``cutout_queue_oldest_age_seconds`` is absent on RabbitMQ
(docs/scaling.md says what to read instead).
"""

from __future__ import annotations

import threading
from typing import Any

from kombu import Connection

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


class AmqpQueues:
    """Depth by passive declare over one connection, shared by the threads of a process (the
    API asks on every submit the cache cannot answer) and opened again after a failure."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def depth(self, queue: str) -> int:
        with self._lock:
            try:
                return self._declare(queue)
            except Exception:
                self._close()  # a stale connection or a closed channel: one fresh try
            try:
                return self._declare(queue)
            except Exception:
                self._close()
                raise

    def oldest_task_ids(self, queue: str) -> list[str]:
        return []

    def _declare(self, queue: str) -> int:
        connection = self._open()
        channel: Any = connection.default_channel
        try:
            ok = channel.queue_declare(queue=queue, passive=True)
        except connection.channel_errors as exc:
            if getattr(exc, "code", None) == 404:  # no worker declared it yet: nothing waits
                self._close()
                return 0
            raise
        return int(ok.message_count)

    def _open(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(
                self.url, connect_timeout=self.timeout, transport_options={"max_retries": 1}
            )
            self._connection.ensure_connection(max_retries=1)
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # already broken: nothing left to close cleanly
                pass
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._close()
