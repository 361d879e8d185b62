"""kombu's Redis transport, mended so that a worker survives a broker restart while it holds
unacknowledged messages, and runs them again soon after (kombu 5.7.0, celery 5.7.0, redis-py
8.1.0).

The defect (kombu issues #582 and #970, https://github.com/celery/kombu/issues/970): when the
connection drops, Celery's consumer calls ``Connection.collect()``, which tries to close the
channels and then detaches the transport from its connection (``transport.client = None``),
and then ``Connection.close()``, which closes the default channel again. With Redis down the
first close stops at its first read of the dead socket, so the channel is still open the second
time; closing it hands its unacknowledged messages back (``QoS.restore_unacked``), which builds
a fresh connection pool from ``self.connection.client`` — now ``None`` — and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'`` in ``_connparams``. That is no
connection error, so ``ignore_errors`` lets it through and the worker exits ("Unrecoverable
error"). An idle worker has nothing to hand back, never builds the pool, and survives. Acks
of the batches still in flight at that moment take the same path.

The fix, in two parts. A channel computes its connection parameters once, while its transport
is attached, and reuses them: a detached channel then reaches the (stopped) server like any
other client, so the hand-back fails with a real ``ConnectionError``, which Celery ignores, and
acks sent by batches that finish after the server is back succeed. And the messages that could
not be handed back are handed back by the process's next channel as soon as it is connected,
rather than an hour later (the visibility timeout) by whichever worker sweeps the unacked index:
Celery forgets what it held across a reconnect (its ETA timer, celery-batches' buffer), so
nothing else would run them sooner. A message still running when the broker went away may so
run twice; the job store's claims make a second run harmless (``jobs/runner.py``).

Selected by ``tasks/worker.py`` (``broker_transport``), so every worker process uses it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("cutout.worker")

# Delivery tags that a closing channel could not hand back, for the next channel to do it.
_left_behind: set[str] = set()
_left_behind_lock = threading.Lock()


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_unacked(self, client: Any = None) -> None:
        tags = list(self._delivered)
        try:
            super().restore_unacked(client)
        except self.channel.connection_errors:
            with _left_behind_lock:
                _left_behind.update(tags)
            raise


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS
    _connparams_cache: dict[bool, dict[str, Any]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # connected (it pings), or it raises
        self._hand_back_left_behind()

    def _hand_back_left_behind(self) -> None:
        with _left_behind_lock:
            tags = sorted(_left_behind)
            _left_behind.clear()
        if not tags:
            return
        log.warning("handing back %d message(s) held when the broker went away", len(tags))
        with self.conn_or_acquire() as client:
            for i, tag in enumerate(tags):
                try:
                    self.qos.restore_by_tag(tag, client)
                except self.connection_errors:
                    with _left_behind_lock:
                        _left_behind.update(tags[i:])
                    raise

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self._connparams_cache is None:
            # Both kinds at once: the pool that is built first after a detach (the sync one,
            # to hand messages back) must not be the first to need the transport.
            self._connparams_cache = {
                kind: super(Channel, self)._connparams(asynchronous=kind) for kind in (False, True)
            }
        return dict(self._connparams_cache[asynchronous])


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
